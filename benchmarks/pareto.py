"""Accuracy vs MACs of the shipped checkpoints (checkpoints/index.json), EfficientNet Figure 1 style.

    python benchmarks/pareto.py [--output benchmarks/pareto.png] [--no-reference] [--root DIR]

Prints the points (and which are Pareto-optimal) and writes a PNG; the right panel is the paper's
Table 2 (EfficientNet-B0..B7 on ImageNet) for reference. `effzoo zoo pareto` writes the same PNG.
"""

import argparse

from effzoo.evaluation.pareto import pareto_front, pareto_plot, zoo_points


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", default="benchmarks/pareto.png")
    p.add_argument("--root", default=None, help="zoo folder (default: $EFFZOO_CHECKPOINTS or the repo's checkpoints/)")
    p.add_argument("--no-reference", action="store_true", help="omit the paper's B0-B7 panel")
    args = p.parse_args()
    points = zoo_points(args.root)
    front = {q["name"] for d in {q["dataset"] for q in points} for q in pareto_front([r for r in points if r["dataset"] == d])}
    print(f"{'checkpoint':44} {'dataset':>14} {'test px':>7} {'MACs (M)':>9} {'params (M)':>10} {'top-1':>7}  pareto")
    for q in points:
        print(f"{q['name']:44} {q['dataset']:>14} {q['test_resolution']:>7} {q['macs'] / 1e6:9.2f} "
              f"{q['params'] / 1e6:10.2f} {q['top1']:6.2f}%  {'*' if q['name'] in front else ''}")
    print(f"wrote {pareto_plot(points, args.output, reference=not args.no_reference)}")


if __name__ == "__main__":
    main()

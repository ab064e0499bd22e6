"""`effzoo search`: the EfficientNet paper's grid search for alpha, beta, gamma at phi = 1, on your data.

    effzoo search --model efficientnet --data digits --grid-step 0.1 --epochs 2 --budget-minutes 20

Each candidate trains with the same recipe and seed (the recipe comes from --config or the
defaults of `effzoo train`); successive halving gives the survivors more epochs. Results go to
OUTPUT/search.json after every finished run, so an interrupted search resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..training.config import load_yaml

if TYPE_CHECKING:
    from ..search import Candidate


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="efficientnet", help="family to scale: efficientnet, resnet, mobilenetv2, or a named base")
    p.add_argument("--data", default="digits", help="digits, fashion-mnist, synthetic, an image folder or a shard folder (path or URL)")
    p.add_argument("--data-dir")
    p.add_argument("--config", help="YAML training recipe for every candidate (as `effzoo train --config`)")
    p.add_argument("--grid-step", type=float, default=0.05)
    p.add_argument("--tolerance", type=float, default=0.1, help="allowed relative distance of alpha*beta^2*gamma^2 (and of "
                                                                 "the measured MAC ratio) from the target")
    p.add_argument("--target-flops-ratio", type=float, default=2.0, help="MAC growth of phi = 1 over the baseline")
    p.add_argument("--epochs", type=int, default=1, help="epochs of the first halving round")
    p.add_argument("--eta", type=int, default=2, help="successive halving: keep 1/eta, train eta x longer")
    p.add_argument("--max-candidates", type=int, help="train only the first N distinct networks: the most balanced, then "
                                                                 "those farthest from the ones already chosen")
    p.add_argument("--budget-minutes", type=float, help="stop starting new runs after this long; 0 trains nothing "
                                                          "and ranks the runs an earlier search saved in --output")
    p.add_argument("--objective-target", type=float, help="T of the MnasNet objective in MACs (default: 2x the baseline)")
    p.add_argument("--objective-w", type=float, default=-0.07)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--train-limit", type=int, help="train on at most N images per candidate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="runs/search", help="folder for the state, per-candidate runs, JSON and plot")
    p.add_argument("--json", help="also write the ranked table to this file")


def _train_config(args: argparse.Namespace) -> dict[str, Any]:
    base = load_yaml(args.config) if args.config else {}
    base.update(model=args.model, data=args.data, seed=args.seed, phi=1.0, test=False, progress_bar=False)
    for key in ("data_dir", "batch_size", "train_limit"):
        if getattr(args, key) is not None:
            base[key] = getattr(args, key)
    return base


def run(args: argparse.Namespace) -> int:
    # deferred: torch/Lightning take seconds to import; --help and argument errors must not wait
    from ..data import create_datamodule
    from ..search import (candidates, halving_runs, merge_same_networks, rank, spread_order,
                          successive_halving)
    from ..training.config import from_dict
    from ..models.base import auto_small_input
    from ..training.run import run_training

    if args.budget_minutes is not None and not args.budget_minutes >= 0:
        raise ValueError(f"--budget-minutes must be >= 0 (0: rank what is saved, train nothing), got {args.budget_minutes}")
    if args.tolerance > 0.1:
        raise ValueError("--tolerance above 0.1 finds coefficients that `effzoo train --coefficients` rejects (it "
                         "accepts alpha*beta^2*gamma^2 within 10% of 2); use 0.1 or less")
    out = Path(args.output)
    base = _train_config(args)
    probe_cfg = from_dict({**base, "phi": 0.0})  # validates the recipe (unknown keys, bad values) up front
    dm = create_datamodule(args.data, data_dir=args.data_dir)
    base_res = probe_cfg.image_size or dm.base_resolution
    small_input = probe_cfg.small_input if probe_cfg.small_input is not None else auto_small_input(base_res)
    kept, dropped, base_macs = candidates(args.model, step=args.grid_step, target=args.target_flops_ratio,
                                          tolerance=args.tolerance, in_chans=dm.in_chans,
                                          base_resolution=base_res, small_input=small_input,
                                          num_classes=dm.num_classes)  # the data's head, not ImageNet's 1000
    within = len(kept)
    kept, merged = merge_same_networks(kept, args.target_flops_ratio)
    kept = spread_order(kept, args.target_flops_ratio)  # a budget trains a prefix: make it cover the grid
    if args.max_candidates:
        kept = kept[: args.max_candidates]
    print(f"{within} candidates within {args.tolerance:.0%} of {args.target_flops_ratio}x the baseline's "
          f"{base_macs / 1e6:.1f} MMACs ({len(dropped)} dropped by their measured MACs); {within - len(merged)} distinct "
          f"networks ({len(merged)} round to the same network as another); training {len(kept)}, at most "
          f"{halving_runs(len(kept), args.eta)} runs")
    deadline = time.monotonic() + 60 * args.budget_minutes if args.budget_minutes is not None else None

    def evaluate(c: Candidate, epochs: int) -> float:
        if deadline is not None and time.monotonic() >= deadline:  # a zero budget has passed already
            raise TimeoutError
        run_dir = out / "runs" / f"a{c.alpha:g}_b{c.beta:g}_g{c.gamma:g}_e{epochs}"
        cfg = {**base, "coefficients": [c.alpha, c.beta, c.gamma], "epochs": epochs, "output": str(run_dir),
               "resume": (run_dir / "last.ckpt").is_file()}
        started = time.monotonic()
        metrics = run_training(cfg).metrics
        print(f"  {c.key} x{epochs} ep: val top-1 {100 * metrics['val_top1']:.2f}% ({time.monotonic() - started:.0f} s)")
        return 100 * float(metrics["val_top1"])

    try:
        successive_halving(kept, evaluate, min_epochs=args.epochs, eta=args.eta, state_path=out / "search.json")
    except TimeoutError:
        print("budget reached: ranking the candidates trained so far (rerun with a larger --budget-minutes to resume)")
    ranked = rank(kept)
    if not ranked:
        raise ValueError(f"--budget-minutes {args.budget_minutes} was too small to train a single candidate; "
                         f"raise it (or use --train-limit / a coarser --grid-step)")
    report(args, ranked, kept, dropped, base_macs, out, merged, dm.num_classes, dm.split_sizes().get("val", 0))
    return 0


def report(args: argparse.Namespace, ranked: list[Candidate], kept: list[Candidate], dropped: list[Candidate],
           base_macs: int, out: Path, merged: list[Candidate], num_classes: int, num_val: int) -> None:
    # deferred: torch/Lightning take seconds to import; --help and argument errors must not wait
    from rich.console import Console
    from rich.table import Table

    from ..evaluation.plots import plot_search_candidates
    from ..search import candidate_row, chance_band, near_chance

    target = args.objective_target or args.target_flops_ratio * base_macs
    rows = [candidate_row(c, target, args.objective_w) for c in ranked]
    table = Table(title=f"alpha, beta, gamma for {args.model} on {args.data} (phi = 1)")
    for col in ("rank", "alpha", "beta", "gamma", "formula", "measured", "MMACs", "params (M)", "epochs", "val top-1", "objective",
                "same net"):
        table.add_column(col, justify="right")
    for i, r in enumerate(rows, 1):
        table.add_row(str(i), f"{r['alpha']:g}", f"{r['beta']:g}", f"{r['gamma']:g}", f"{r['formula_ratio']:.3f}",
                      f"{r['measured_ratio']:.3f}", f"{r['macs'] / 1e6:.1f}", f"{r['params'] / 1e6:.2f}",
                      max(r["accuracy"], key=int), f"{r['best_accuracy']:.2f}", f"{r['objective']:.2f}",
                      str(len(r["same_network_as"])))
    console = Console(width=max(120, Console().width))
    console.print(table)
    best = rows[0]
    chance, band = chance_band(num_classes, num_val)
    if near_chance([r["best_accuracy"] for r in rows], num_classes, num_val):
        best = None  # a ranking of noise names no winner
        console.print(f"no winner: every trained candidate is within noise of chance (best val top-1 "
                      f"{rows[0]['best_accuracy']:.1f}%, chance {chance:.1f}%, noise up to {band:.1f}% on {num_val} "
                      f"val images); they trained too briefly to rank. Rerun with more epochs (--epochs) or a "
                      f"larger --budget-minutes; trained candidates are kept and resumed.")
    else:
        console.print(f"winner: effzoo train --model {args.model} --coefficients {best['coefficients_arg']} --phi 2")
    result = {"model": args.model, "data": args.data, "baseline_macs": base_macs, "objective_target": target,
              "winner": best, "top_ranked": rows[0], "chance_top1": chance, "noise_band_top1": band, "ranked": rows,
              "untrained": [candidate_row(c, target) for c in kept if not c.accuracy],
              "same_network_as_another": [candidate_row(c, target) for c in merged],
              "dropped_by_measured_macs": [candidate_row(c, target) for c in dropped]}
    (out / "ranking.json").write_text(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    plot_search_candidates(rows, out / "accuracy_vs_macs.png")
    console.print(f"ranking.json and accuracy_vs_macs.png in {out}")


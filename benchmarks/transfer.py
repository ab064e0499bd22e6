"""Transfer: a shipped Fashion-MNIST model fine-tuned on digits with 10, 100 and all labels per class, against the
same network trained from scratch for the same epochs, and a linear probe (`--freeze backbone`).

    python benchmarks/transfer.py [--seeds 0 1 2] [--budgets 10 100 all] [--epochs 40 15 15]
                                  [--arms scratch finetune probe] [--json runs/benchmarks/transfer.json]
    python benchmarks/transfer.py --smoke       # one seed, 10 labels per class, 2 epochs: checks the script

Which transfer, and why (the issue allows either this or Fashion-MNIST classes 0-4 -> 5-9): the pretraining is
`effzoo_efficientnet_phi-4_fashion-mnist_28px_16ep`, the zoo's best model (93.4% Fashion-MNIST test top-1),
whose training cost about 100 minutes on 2 CPU cores. A 0-4 -> 5-9 split would need a second pretraining of
that size inside the benchmark and fine-tuning runs on up to 30,000 images; digits fine-tunes on at most 1,257
and still moves across domains (clothing photos -> handwritten strokes, both grayscale and small), so a win
here is features carrying over, not the same images seen twice. "all" is the digits training split
(1,257 images, about 126 per class); the test split (270 images, fixed seed) is the same for every run.

Arms, per labels-per-class budget and seed (the seed also draws the labelled subset and the val split):
- scratch: the same architecture (EfficientNet phi -4, 28 px, stride 8) with the digits recipe (AdamW,
  lr_base 0.016, cosine, zero classifier);
- finetune: `--pretrained` the zoo model, a new zero classifier for the digit classes, and the digits recipe
  (the built-in data recipe wins over the generic fine-tuning values; see "Measured");
- probe: the same, `--freeze backbone --head-lr-mult 10` (only the classifier learns, so it gets a larger rate).
Every arm runs the same epochs per budget (more for the smallest budget: 100 images are 3 steps an epoch) and
reports test top-1 of its best-validation checkpoint. Target (issue 17): finetune clearly above scratch at 10
and 100 labels per class. Cost: about 27 runs of 0.5-3 minutes each on 2 cores (~50 min); `--arms`, `--seeds`,
`--budgets` trim it.

Measured (2 CPU cores, busy with other jobs, so the seconds are not comparable; 10 labels per class, 25 epochs =
75 steps, test top-1 of the best-validation checkpoint, seeds 0 / 1 / 2):
    scratch                                       90.74 / 89.26 / 89.26   mean 89.8
    finetune, lr_base 0.004 (the generic recipe)  79.63 / 72.22 / 70.37   mean 74.1
    finetune, lr_base 0.016 (the digits recipe)   93.70 / 92.59 / 92.22   mean 92.8   (+3.0 over scratch)
    probe (--freeze backbone, --head-lr-mult 10)  68.15 / 68.15 / 68.15   mean 68.1
With the digits recipe's rate, 15 epochs, seeds 0-2 (`--budgets 100 all --epochs 15 15`), mean ± std:
    100 per class: scratch 98.64 ± 0.93, finetune 97.90 ± 0.77, probe 89.75 ± 1.13   (finetune - scratch -0.74)
    all (~126):    scratch 98.52 ± 0.98, finetune 98.15 ± 0.64, probe 90.49 ± 0.21   (finetune - scratch -0.37)
So on this pair the pretrained start wins only where labels are scarce: digits at 100 per class are learned
from scratch to ~98.6% (the 270-image test split's 1-3 errors are the spread), which leaves no room for a
clear win; the issue's "win at 100 labels" needs a harder target (its Fashion-MNIST 0-4 -> 5-9 split). The
generic recipe's low rate starved the new classifier in 75 steps; since then a built-in data recipe's rate
wins over it. The probe's three equal test scores are three different classifiers (their
weights differ, best epochs 22 and 11) with the same 184 of 270 test images right: Fashion-MNIST features
separate digits only so far. Not yet run: Fashion-MNIST 0-4 -> 5-9 (about an hour of pretraining first).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

SOURCE = "effzoo_efficientnet_phi-4_fashion-mnist_28px_16ep"
DIGITS_CLASSES = 10
# The source's architecture, for the scratch arm (the fine-tuning arms read it from the source).
SCRATCH = {"model": "efficientnet", "phi": -4, "small_input": True, "image_size": 28}
ARMS: dict[str, dict[str, Any]] = {
    "scratch": dict(SCRATCH),
    "finetune": {"pretrained": SOURCE},
    "probe": {"pretrained": SOURCE, "freeze": "backbone", "head_lr_mult": 10.0},
}


def run_one(arm: str, budget: str, epochs: int, seed: int, work: Path, smoke: bool) -> dict[str, Any]:
    from effzoo.training.run import run_training

    cfg: dict[str, Any] = {"data": "digits", "seed": seed, "epochs": epochs, "num_workers": 0, "accelerator": "cpu",
                           "devices": 1, "progress_bar": False, **ARMS[arm]}
    if budget != "all":
        cfg["train_limit"] = int(budget) * DIGITS_CLASSES  # stratified: the same count in every class
    if smoke:
        cfg.update(limit_train_batches=2, limit_val_batches=2)
    with tempfile.TemporaryDirectory(dir=work) as out:
        cfg["output"] = str(Path(out) / "run")
        started = time.perf_counter()
        metrics = run_training(cfg).metrics
    return {"arm": arm, "budget": budget, "seed": seed, "epochs": epochs, "seconds": round(time.perf_counter() - started, 1),
            "test_top1": metrics.get("test_top1"), "val_top1": metrics.get("val_top1"), "best_epoch": metrics.get("best_epoch")}


def summarize(runs: list[dict[str, Any]], arms: list[str], budgets: list[str]) -> dict[str, dict[str, Any]]:
    """Mean, sample standard deviation and range of test top-1 (%) per budget and arm."""
    table: dict[str, dict[str, Any]] = {}
    for budget in budgets:
        for arm in arms:
            values = [100 * r["test_top1"] for r in runs if r["arm"] == arm and r["budget"] == budget
                      and r["test_top1"] is not None]
            if values:
                table.setdefault(budget, {})[arm] = {
                    "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "min": min(values), "max": max(values), "n": len(values)}
    return table


def print_table(table: dict[str, dict[str, Any]], arms: list[str]) -> None:
    print(f"\ntest top-1 (%) on digits, mean ± std over seeds [min-max]; source {SOURCE}")
    print("| labels per class | " + " | ".join(arms) + (" | finetune - scratch |" if {"finetune", "scratch"} <= set(arms) else " |"))
    print("|---" * (len(arms) + 1 + ({"finetune", "scratch"} <= set(arms))) + "|")
    for budget, row in table.items():
        cells = [f"{row[a]['mean']:.2f} ± {row[a]['std']:.2f} [{row[a]['min']:.1f}-{row[a]['max']:.1f}]"
                 if a in row else "n/a" for a in arms]
        if {"finetune", "scratch"} <= set(arms) and {"finetune", "scratch"} <= set(row):
            cells.append(f"{row['finetune']['mean'] - row['scratch']['mean']:+.2f}")
        print(f"| {budget} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budgets", nargs="+", default=["10", "100", "all"], help="labels per class, or all")
    p.add_argument("--epochs", type=int, nargs="+", default=[40, 15, 15], help="epochs per budget, in --budgets order")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--json", default="runs/benchmarks/transfer.json")
    p.add_argument("--work", default=None, help="folder for the (deleted) run outputs (default: the system temp dir)")
    p.add_argument("--smoke", action="store_true", help="one seed, 10 labels per class, 2 epochs of 2 batches")
    args = p.parse_args()
    if args.smoke:
        args.seeds, args.budgets, args.epochs = [0], ["10"], [2]
    if len(args.epochs) != len(args.budgets):
        p.error(f"--epochs needs one number per budget ({len(args.budgets)}), got {len(args.epochs)}")
    work = Path(args.work or tempfile.gettempdir())
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    for budget, epochs in zip(args.budgets, args.epochs):
        for seed in args.seeds:
            for arm in args.arms:
                runs.append(run_one(arm, budget, epochs, seed, work, args.smoke))
                r = runs[-1]
                print(f"[transfer] {arm:8s} {budget:>4s}/class seed {seed}: test top-1 "
                      f"{100 * (r['test_top1'] or 0):.2f}% (val {100 * (r['val_top1'] or 0):.2f}%, {r['seconds']} s)", flush=True)
    table = summarize(runs, args.arms, args.budgets)
    print_table(table, args.arms)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"source": SOURCE, "data": "digits", "arms": {a: ARMS[a] for a in args.arms},
                               "seeds": args.seeds, "budgets": dict(zip(args.budgets, args.epochs)),
                               "smoke": args.smoke, "summary": table, "runs": runs}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""The paper's alpha/beta/gamma grid search at small scale on Fashion-MNIST, compared with the
paper's (1.2, 1.1, 1.15) and with single-dimension scaling at the same MACs (paper Figure 3 / Table 3).

    python benchmarks/search_fashion_mnist.py [--model mobilenetv2_050] [--grid-step 0.1] [--budget-minutes 20]
        [--epochs 1] [--train-limit 6000] [--final-epochs 3] [--output runs/bench-search]

Step 1 runs `effzoo search` (successive halving within the budget). Step 2 trains, with the same
recipe, seed and epochs: the winner at phi = 1, the paper's coefficients at phi = 1, and depth-,
width- and resolution-only models whose MACs match the paper's phi = 1 model (d = 2, w = sqrt(2),
r = sqrt(2)), then prints val top-1 and measured MACs side by side. Resumable: rerun the command.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import yaml

from effzoo.cli import main as effzoo_main
from effzoo.data import create_datamodule
from effzoo.scaling import round_resolution
from effzoo.training.run import run_training


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mobilenetv2_050")
    p.add_argument("--grid-step", type=float, default=0.1)
    p.add_argument("--budget-minutes", type=float, default=20)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--final-epochs", type=int, default=3)
    p.add_argument("--train-limit", type=int, default=6000)
    p.add_argument("--max-candidates", type=int, default=8)
    p.add_argument("--output", default="runs/bench-search")
    args = p.parse_args()
    out = Path(args.output)
    # One recipe for the search and the comparison: the built-in fashion-mnist one, with a short warm-up
    # (its 1-epoch warm-up would be the whole of a 1-epoch candidate) and no EMA (nothing to average yet).
    recipe = {"warmup_epochs": 0.2, "ema_decay": 0.0}
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    started = time.monotonic()
    effzoo_main(["search", "--config", str(out / "recipe.yaml"), "--model", args.model, "--data", "fashion-mnist",
                 "--grid-step", str(args.grid_step),
                 "--epochs", str(args.epochs), "--budget-minutes", str(args.budget_minutes), "--train-limit",
                 str(args.train_limit), "--max-candidates", str(args.max_candidates), "--output", str(out / "search")])
    search_minutes = (time.monotonic() - started) / 60
    ranking = json.loads((out / "search" / "ranking.json").read_text())
    if ranking["winner"] is None:
        raise SystemExit("the search's candidates are all within noise of chance: raise --epochs or --budget-minutes")
    winner = ranking["winner"]
    base_res = create_datamodule("fashion-mnist").base_resolution
    arms = {
        "baseline (phi=0)": dict(phi=0.0),
        "winner": dict(phi=1.0, coefficients=[winner["alpha"], winner["beta"], winner["gamma"]]),
        "paper (1.2, 1.1, 1.15)": dict(phi=1.0, coefficients=[1.2, 1.1, 1.15]),
        "depth only (d=2)": dict(depth_multiplier=2.0),
        "width only (w=1.41)": dict(width_multiplier=math.sqrt(2)),
        "resolution only (r=1.41)": dict(image_size=round_resolution(base_res, math.sqrt(2))),
    }
    rows = []
    for name, arm in arms.items():
        folder = out / "compare" / name.split()[0]
        if name == "winner":  # a resumed search may pick another winner: never reuse a stale arm
            folder = out / "compare" / f"winner_{winner['coefficients_arg'].replace(',', '_')}"
        cfg = {"model": args.model, "data": "fashion-mnist", "epochs": args.final_epochs, "train_limit": args.train_limit,
               **recipe, "progress_bar": False, "output": str(folder),
               "resume": (folder / "last.ckpt").is_file()}
        cfg.update(arm)
        if not (folder / "model.json").is_file():  # finished arms are not retrained
            run_training(cfg)
        meta = json.loads((folder / "model.json").read_text())
        rows.append({"arm": name, "macs": meta["macs"], "val_top1": 100 * meta["metrics"]["val_top1"]})
    print(f"search: {search_minutes:.1f} min this invocation (finished candidates of an earlier one are reused)")
    for r in rows:
        print(f"{r['arm']:28s} {r['macs'] / 1e6:8.1f} MMACs   val top-1 {r['val_top1']:.2f}")
    (out / "compare.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

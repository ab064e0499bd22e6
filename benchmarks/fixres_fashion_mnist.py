"""FixRes at small scale: Fashion-MNIST trained at a low resolution with RandomResizedCrop, then
(a) tested at the train resolution, (b) at the best higher resolution chosen on validation data,
(c) after BN recalibration there, (d) after `effzoo fixres-finetune`, (e) after the temperature it fits
on validation data. Test top-1, loss and expected calibration error of each, per seed.

    python benchmarks/fixres_fashion_mnist.py [--seeds 0 1 2] [--epochs 4] [--train-limit 20000]
        [--model efficientnet --phi -3] [--output runs/bench-fixres]

Sizes are parameters because a full run (60k images, many epochs, 3 seeds) takes hours on 2 CPU
cores; the numbers printed say which configuration produced them. Needs the Debian package
dataset-fashion-mnist (or --data-dir with the IDX files).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from effzoo.training.fixres_stage import fixres_stage
from effzoo.training.run import run_training


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet")
    p.add_argument("--phi", type=float, default=-3.0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--train-limit", type=int, default=20000)
    p.add_argument("--sweep", default=None, help="test resolutions to choose from (default: train res x 1..2)")
    p.add_argument("--finetune-epochs", type=int, default=2)
    # The fashion-mnist recipe's EMA (0.999) averages over ~1,000 steps: right for its 15 full epochs,
    # but a short run's EMA weights would still be mostly the random init (measured: 10% val after one epoch).
    p.add_argument("--ema-decay", type=float, default=0.0)
    p.add_argument("--data-dir")
    p.add_argument("--output", default="runs/bench-fixres")
    args = p.parse_args()

    arms = ("a_train_resolution", "b_chosen_resolution", "c_bn_recalibrated", "d_finetuned", "e_temperature_scaled")
    results = []
    for seed in args.seeds:
        run = Path(args.output) / f"seed{seed}"
        started = time.time()
        cfg = {"model": args.model, "phi": args.phi, "data": "fashion-mnist", "epochs": args.epochs, "seed": seed,
               "train_limit": args.train_limit, "ema_decay": args.ema_decay, "output": str(run / "train"), "progress_bar": False,
               # FixRes is about RandomResizedCrop's apparent-size shift: keep the dataset's strong crops
               # (area 0.35-1) and the usual 0.875 center crop, not the fashion-mnist recipe's mild ones.
               "scale": [0.35, 1.0], "crop_pct": 0.875, "random_erasing": 0.1, "drop_path_rate": 0.1,
               "resume": (run / "train" / "last.ckpt").is_file()}
        if args.data_dir:
            cfg["data_dir"] = args.data_dir
        if not (run / "train" / "model.json").is_file():
            run_training(cfg)
        trained = time.time() - started
        report = fixres_stage(run / "train", "fashion-mnist", run / "fixres", sweep=args.sweep, seed=seed,
                              epochs=args.finetune_epochs, data_dir=args.data_dir)
        row = {"seed": seed, "train_seconds": round(trained), "train_res": report["train_resolution"],
               "test_res": report["test_resolution"], "temperature": report["calibration"]["temperature"],
               **{a: report["test"][a]["top1"] for a in arms},
               **{f"{a}_{k}": report["test"][a][k] for a in arms for k in ("loss", "ece")}}
        results.append(row)
        print(json.dumps(row))
    print(f"\n{args.model} phi={args.phi}, {args.epochs} epochs on {args.train_limit} training images, "
          f"seeds {args.seeds}; test top-1 (%):")
    for arm in arms:
        values = [r[arm] for r in results]
        spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
        loss, ece = (statistics.mean(r[f"{arm}_{k}"] for r in results) for k in ("loss", "ece"))
        print(f"  {arm:22s} {statistics.mean(values):6.2f}{spread}   {values}   loss {loss:.3f}  ECE {ece:.3f}")
    gains = [r["d_finetuned"] - r["a_train_resolution"] for r in results]
    print(f"  (d) - (a) = {statistics.mean(gains):+.2f} points   per seed {[round(g, 2) for g in gains]}")
    Path(args.output).mkdir(parents=True, exist_ok=True)
    (Path(args.output) / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

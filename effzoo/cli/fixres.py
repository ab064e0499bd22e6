"""`effzoo fixres-finetune`: pick the test resolution on validation data and fine-tune the model at it."""

from __future__ import annotations

import argparse
import json

from ..training.config import ADAPT_CHOICES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="an `effzoo train` output folder, model.safetensors, a Lightning .ckpt, or a shipped zoo name")
    p.add_argument("--data", help="digits, fashion-mnist, synthetic, an image folder or a shard folder (default: the training data "
                                  "recorded in the checkpoint)")
    p.add_argument("--data-dir", help="where the data's files are (fashion-mnist)")
    res = p.add_mutually_exclusive_group()
    res.add_argument("--test-res", type=int, help="use this test resolution instead of choosing one")
    res.add_argument("--sweep", help="resolutions to choose from on the validation split, e.g. 32,40,48 "
                                     "(default: train resolution x 1.0, 1.15, 1.3, 1.5, 1.75, 2.0)")
    p.add_argument("--adapt", choices=ADAPT_CHOICES, default="classifier+bn",
                   help="what fine-tuning changes (default: classifier + last BN statistics, the rest frozen)")
    p.add_argument("--bn-affine", action="store_true", help="also train the last BN's scale and shift")
    p.add_argument("--recalibrate-only", action="store_true", help="only re-estimate the last BN's statistics (no gradient steps)")
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                   help="skip the temperature fitted on the validation split and folded into the classifier "
                        "(it keeps every prediction and repairs the loss and calibration that BN re-estimation upsets)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", required=True, help="new output folder (the input checkpoint is never modified)")
    p.add_argument("--json", help="also write the report to this file")


def run(args: argparse.Namespace) -> int:
    # deferred: torch/Lightning take seconds to import; --help and argument errors must not wait
    from rich.console import Console
    from rich.table import Table

    from ..artifacts.zoo_index import resolve_checkpoint
    from ..evaluation.evaluate import recorded_data
    from ..evaluation.progress import reporting
    from ..training.fixres_stage import fixres_stage

    checkpoint, _ = resolve_checkpoint(args.checkpoint)  # a zoo name too; its folder is only read
    data = args.data or recorded_data(checkpoint).get("data")
    if not data:
        raise ValueError(f"{checkpoint} does not record the data it was trained on: pass --data")
    with reporting("fixres-finetune"):  # progress of the sweeps and test passes fixres_stage runs
        report = fixres_stage(checkpoint, data, args.output, test_res=args.test_res, sweep=args.sweep,
                              adapt=args.adapt, epochs=args.epochs, lr=args.lr, bn_affine=args.bn_affine,
                              recalibrate_only=args.recalibrate_only, batch_size=args.batch_size,
                              data_dir=args.data_dir, num_workers=args.num_workers, seed=args.seed,
                              calibrate=args.calibrate)
    console = Console(width=max(100, Console().width))
    sweep = Table(title=f"validation top-1 by test resolution (train {report['train_resolution']} px)")
    for col in ("resolution", "before", "after"):
        sweep.add_column(col, justify="right")
    for b, a in zip(report["sweep_before"], report["sweep_after"]):
        mark = " *" if b["resolution"] == report["test_resolution"] else ""
        sweep.add_row(f"{b['resolution']}{mark}", f"{b['top1']:.2f}", f"{a['top1']:.2f}")
    console.print(sweep)
    test = Table(title="test split (reported, never used for selection)")
    for col in ("arm", "resolution", "top-1", "loss", "ECE"):
        test.add_column(col, justify="right")
    for arm, row in report["test"].items():
        test.add_row(arm, str(row["resolution"]), f"{row['top1']:.2f}", f"{row['loss']:.4f}", f"{row.get('ece', float('nan')):.4f}")
    console.print(test)
    if "calibration" in report:
        console.print(f"temperature {report['calibration']['temperature']:.3f} (fitted on val) folded into the classifier")
    console.print(f"wrote {args.output} (model.safetensors, model.json with test_input_size {report['test_resolution']}, "
                  f"model_card.md, fixres.json)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0

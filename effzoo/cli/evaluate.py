"""`effzoo evaluate`: metrics of a checkpoint on a split, at one or several test resolutions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def data_option(text: str) -> tuple[str, Any]:
    """KEY=VALUE of --data-option; numbers become numbers (synthetic's options are all integers)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. num_classes=10, got {text!r}")
    for kind in (int, float):
        try:
            return key.strip(), kind(value)
        except ValueError:
            pass
    return key.strip(), value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="an `effzoo train` output folder, model.safetensors, a Lightning .ckpt, or a shipped zoo name (`effzoo zoo list`)")
    p.add_argument("--data", help="digits, fashion-mnist, synthetic, an image folder or a shard folder (path or URL) "
                                  "(default: the dataset the checkpoint was trained on, with that run's splits)")
    p.add_argument("--data-dir", help="where the data's files are (fashion-mnist)")
    p.add_argument("--data-option", action="append", type=data_option, default=[], metavar="KEY=VALUE",
                   help="a dataset option, repeatable (synthetic: num_classes, in_chans, size, num_samples)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="evaluate even when the data's class names differ from the model's")
    p.add_argument("--split", choices=("val", "test"), default="test")
    p.add_argument("--res", help="test resolutions, e.g. 32,40,48 (default: the model's test_input_size)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-workers", type=int)
    p.add_argument("--device", default="auto",
                   help="auto (a CUDA GPU when one is visible, else the CPU), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--output", help="folder for the PNG plots (default: CHECKPOINT_FOLDER/evaluation/DATA_SPLIT_resR1-R2, "
                                    "one folder per dataset, split and resolution set)")
    p.add_argument("--json", help="also write the results to this JSON file")


def run(args: argparse.Namespace) -> int:
    # deferred: torch/Lightning take seconds to import; --help and argument errors must not wait
    from ..artifacts.weights import load_checkpoint
    from ..artifacts.zoo_index import resolve_checkpoint
    from ..evaluation.evaluate import parse_resolutions, resolution_sweep, resolve_device

    device = resolve_device(args.device)  # before loading anything: a wrong device fails at once
    args.checkpoint, args.zoo_name = resolve_checkpoint(args.checkpoint)
    model = load_checkpoint(args.checkpoint).to(device)
    data, dm = build_data(args, model)
    resolutions = parse_resolutions(args.res or [model.pretrained_cfg["test_input_size"][-1]],
                                    getattr(model, "total_stride", 1))
    rows = resolution_sweep(model, dm, resolutions, split=args.split, with_macs=True, progress="evaluate")
    params = sum(p.numel() for p in model.parameters())
    for r in rows:
        r["params"] = params
    print_tables(model, rows, data, args.split, device)
    out = write_plots(args, model, rows, data, resolutions)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"checkpoint": str(args.checkpoint), "data": data, "split": args.split, "device": str(device),
                       "plots": str(out), "results": rows}, f, indent=2)
    return 0


def build_data(args: argparse.Namespace, model: Any) -> tuple[str, Any]:
    """The dataset to evaluate on (--data, else the recorded one) and its data module, checked against the model."""
    # deferred: see run()
    from ..evaluation.evaluate import DataMismatchError, check_data_matches, datamodule_for, recorded_data

    recorded = recorded_data(args.checkpoint, model)
    data = args.data or recorded.get("data")
    if not data:
        raise ValueError(f"{args.checkpoint} does not record which data it was trained on: "
                         f"pass --data (digits, fashion-mnist, synthetic or an image folder)")
    # The training data again: rebuild that run's splits (seed, options), so "test" is the run's held-out test set.
    same = str(data) == str(recorded.get("data"))
    options = {**((recorded.get("data_options") or {}) if same else {}), **dict(args.data_option)}
    dm = datamodule_for(model, data, data_dir=args.data_dir or (recorded.get("data_dir") if same else None),
                        batch_size=args.batch_size, num_workers=args.num_workers, check_shape=False,
                        seed=recorded.get("seed", 0) if same else 0,
                        val_fraction=recorded.get("val_fraction") if same else None, **options)
    try:
        label = f"--data {data}" if args.data else f"the recorded data {data}"
        note = check_data_matches(model, dm, allow_mismatch=args.allow_mismatch, label=label)
    except DataMismatchError as e:
        raise ValueError(f"{e}; pass --allow-mismatch to evaluate anyway" if e.overridable else str(e)) from None
    if note:
        print(f"effzoo evaluate: warning: {note}", file=sys.stderr)
    return str(data), dm


def print_tables(model: Any, rows: list[dict[str, Any]], data: str, split: str, device: Any) -> None:
    # deferred: see run()
    from rich.console import Console
    from rich.table import Table

    cfg = model.pretrained_cfg
    table = Table(title=f"{cfg.get('model_name')} on {data} ({split}), train {cfg['input_size'][-1]} px, {device}")
    for col in ("resolution", "top-1", "top-5", "loss", "ECE", "images/s", "GMACs"):
        table.add_column(col, justify="right")
    for r in rows:
        top5 = next((r[k] for k in r if k.startswith("top") and k != "top1"), float("nan"))
        table.add_row(str(r["resolution"]), f"{r['top1']:.2f}", f"{top5:.2f}", f"{r['loss']:.4f}", f"{r['ece']:.4f}",
                      f"{r['images_per_s']:.0f}", f"{r['macs'] / 1e9:.4f}")
    console = Console(width=max(100, Console().width))
    console.print(table)
    best = max(rows, key=lambda r: r["top1"])
    per_class = Table(title=f"per-class top-1 at {best['resolution']} px")
    per_class.add_column("class")
    per_class.add_column("top-1", justify="right")
    for name, acc in zip(class_names(model), best["per_class_top1"]):
        per_class.add_row(str(name), f"{acc:.2f}")
    console.print(per_class)


def class_names(model: Any) -> list[str]:
    return list(model.pretrained_cfg.get("class_names") or [str(i) for i in range(model.num_classes)])


def write_plots(args: argparse.Namespace, model: Any, rows: list[dict[str, Any]], data: str,
                resolutions: list[int]) -> Path:
    """The confusion matrix (and accuracy vs resolution) in this evaluation's own folder; returns the folder."""
    # deferred: see run()
    from ..artifacts.zoo_index import zoo_output_folder
    from ..evaluation.plots import evaluation_folder_name, plot_accuracy_vs_resolution, plot_confusion_matrix

    ckpt = Path(args.checkpoint)
    name = evaluation_folder_name(data, args.split, resolutions, dict(args.data_option))
    # A shipped model's folder stays as indexed: its evaluations go to runs/<zoo name>/ instead.
    home = zoo_output_folder(args.zoo_name) if getattr(args, "zoo_name", None) else (ckpt if ckpt.is_dir() else ckpt.parent)
    out = Path(args.output) if args.output else home / "evaluation" / name
    best = max(rows, key=lambda r: r["top1"])
    written = [plot_confusion_matrix(best["confusion_matrix"], class_names(model), out / "confusion_matrix.png",
                                     f"{data} {args.split}, {best['resolution']} px: top-1 {best['top1']:.2f}%")]
    if len(rows) > 1:
        written.append(plot_accuracy_vs_resolution(rows, out / "accuracy_vs_resolution.png",
                                                   train_resolution=model.pretrained_cfg["input_size"][-1]))
    print(f"plots in {out}: {', '.join(p.name for p in written)}")
    return out

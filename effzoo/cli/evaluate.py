"""`effzoo evaluate`: metrics of a checkpoint on a split, at one or several test resolutions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="an `effzoo train` output folder, model.safetensors or .ckpt")
    p.add_argument("--data", required=True, help="digits, fashion-mnist, synthetic or an image folder")
    p.add_argument("--data-dir", help="where the data's files are (fashion-mnist)")
    p.add_argument("--split", choices=("val", "test"), default="test")
    p.add_argument("--res", help="test resolutions, e.g. 32,40,48 (default: the model's test_input_size)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-workers", type=int)
    p.add_argument("--device", default="auto",
                   help="auto (a CUDA GPU when one is visible, else the CPU), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--output", help="folder for the PNG plots (default: CHECKPOINT_FOLDER/evaluation)")
    p.add_argument("--json", help="also write the results to this JSON file")


def run(args: argparse.Namespace) -> int:
    # deferred: torch/Lightning take seconds to import; --help and argument errors must not wait
    from rich.console import Console
    from rich.table import Table

    from ..artifacts.weights import load_checkpoint
    from ..evaluation.evaluate import datamodule_for, resolution_sweep, resolve_device
    from ..evaluation.plots import plot_accuracy_vs_resolution, plot_confusion_matrix

    device = resolve_device(args.device)  # before loading anything: a wrong device fails at once
    model = load_checkpoint(args.checkpoint).to(device)
    cfg = model.pretrained_cfg
    dm = datamodule_for(model, args.data, data_dir=args.data_dir, batch_size=args.batch_size, num_workers=args.num_workers)
    resolutions = args.res or [cfg["test_input_size"][-1]]
    rows = resolution_sweep(model, dm, resolutions, split=args.split, with_macs=True)
    params = sum(p.numel() for p in model.parameters())
    for r in rows:
        r["params"] = params

    table = Table(title=f"{cfg.get('model_name')} on {args.data} ({args.split}), train {cfg['input_size'][-1]} px, {device}")
    for col in ("resolution", "top-1", "top-5", "loss", "ECE", "images/s", "GMACs"):
        table.add_column(col, justify="right")
    for r in rows:
        top5 = next((r[k] for k in r if k.startswith("top") and k != "top1"), float("nan"))
        table.add_row(str(r["resolution"]), f"{r['top1']:.2f}", f"{top5:.2f}", f"{r['loss']:.4f}", f"{r['ece']:.4f}",
                      f"{r['images_per_s']:.0f}", f"{r['macs'] / 1e9:.4f}")
    console = Console(width=max(100, Console().width))
    console.print(table)
    best = max(rows, key=lambda r: r["top1"])
    names = cfg.get("class_names") or [str(i) for i in range(model.num_classes)]
    per_class = Table(title=f"per-class top-1 at {best['resolution']} px")
    per_class.add_column("class")
    per_class.add_column("top-1", justify="right")
    for name, acc in zip(names, best["per_class_top1"]):
        per_class.add_row(str(name), f"{acc:.2f}")
    console.print(per_class)

    ckpt = Path(args.checkpoint)
    out = Path(args.output) if args.output else (ckpt if ckpt.is_dir() else ckpt.parent) / "evaluation"
    plot_confusion_matrix(best["confusion_matrix"], names, out / "confusion_matrix.png",
                          f"{args.split}, {best['resolution']} px: top-1 {best['top1']:.2f}%")
    if len(rows) > 1:
        plot_accuracy_vs_resolution(rows, out / "accuracy_vs_resolution.png", train_resolution=cfg["input_size"][-1])
    console.print(f"plots in {out}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"checkpoint": str(args.checkpoint), "data": args.data, "split": args.split, "device": str(device),
                       "results": rows}, f, indent=2)
    return 0

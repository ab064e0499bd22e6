"""`effzoo benchmark`: inference and training throughput of an effzoo model next to timm's model of the same name.

The protocol (interleaved rounds, warm-up, percentiles) is `effzoo.evaluation.benchmark.benchmark`'s;
this module parses the options and prints the result as a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..evaluation.bench_options import BENCHES, RUNTIMES, TRAIN_PRECISIONS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="registered model name, e.g. efficientnet_b0 (see `effzoo models`), or an exported .onnx file "
                        "(float or int8, e.g. runs/x/model.int8.onnx; with --runtime onnxruntime, inference only)")
    p.add_argument("--phi", type=float, default=None, help="compound-scaling coefficient (no timm counterpart then)")
    p.add_argument("--res", type=int, default=None, help="input resolution (default: the model's)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--bench", choices=BENCHES, default="both", help="inference, training or both (default)")
    p.add_argument("--compile", action="store_true", help="torch.compile the optimized inference model (slow first call)")
    p.add_argument("--runtime", choices=RUNTIMES, default="torch",
                   help="run inference in torch (default) or export to ONNX and run it in ONNX Runtime (CPU)")
    p.add_argument("--precision", choices=TRAIN_PRECISIONS, default="32-true",
                   help="effzoo's training step precision, as `effzoo train --precision` (timm's stays float32)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the results as JSON to FILE ('-' for stdout)")
    p.add_argument("--iters", type=int, default=10, help="timed batches per contestant per round")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches per contestant first")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--in-chans", type=int, default=3)
    p.add_argument("--no-timm", action="store_true", help="do not benchmark timm's model")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto (a CUDA GPU when visible)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's); 1 is steadier on a CPU shared with other jobs")


def run(args: argparse.Namespace) -> int:
    # deferred: torch/Lightning take seconds to import; --help and argument errors must not wait
    from rich.console import Console

    from ..evaluation.benchmark import benchmark

    console = Console(stderr=True)
    result = benchmark(args.model, res=args.res, batch_size=args.batch_size, bench=args.bench, compile=args.compile,
                       runtime=args.runtime, precision=args.precision,
                       phi=args.phi, num_classes=args.num_classes, in_chans=args.in_chans, warmup=args.warmup,
                       iters=args.iters, repeats=args.repeats, compare_timm=not args.no_timm, device=args.device, threads=args.threads,
                       log=lambda m: console.log(m))
    if args.json == "-":
        print(json.dumps(result, indent=2))
        return 0
    Console(width=max(170, Console().width)).print(result_table(result))  # never wrap in pipes/CI logs
    if result["timm_note"]:
        print(f"no timm comparison: {result['timm_note']}")
    for b, ratio in result["speedup"].items():
        print(f"{'inference' if b == 'infer' else 'training'}: effzoo / timm = {ratio:.2f}x images/s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


def result_table(result: dict[str, Any]):  # -> rich.table.Table
    """The benchmark result as a table: one row per bench and implementation, with the speed-up over timm."""
    from rich.table import Table

    env = result["environment"]
    title = (f"{result['model']} at {result['resolution']} px, batch {result['batch_size']} "
             f"({env['device']}, {env['threads']} threads, torch {env['torch']}, timm {env['timm']})")
    table = Table(title=title)
    for col in ("bench", "implementation", "how", "images/s", "p50 ms", "p90 ms", "p99 ms", "params (M)", "GMACs", "vs timm"):
        table.add_column(col, justify="left" if col in ("bench", "implementation", "how") else "right", no_wrap=True)
    for b in ("infer", "train"):
        for side in ("effzoo", "timm"):
            row = result.get(side)
            if not row or b not in row:
                continue
            s = row[b]
            ratio = result["speedup"].get(b) if side == "effzoo" else 1.0 if result["speedup"].get(b) else None
            table.add_row(
                "inference" if b == "infer" else "training", side, row[f"{b}_path"],
                f"{s['images_per_s']:.1f}", f"{s['latency_ms']['p50']:.1f}", f"{s['latency_ms']['p90']:.1f}",
                f"{s['latency_ms']['p99']:.1f}", f"{row['params'] / 1e6:.2f}", f"{row['macs'] / 1e9:.3f}",
                "-" if ratio is None else f"{ratio:.2f}x",
            )
    return table

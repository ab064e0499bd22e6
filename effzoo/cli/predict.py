"""`effzoo predict`: what a trained model sees in image files, as a table or streamed JSON Lines / CSV.

A thin layer over `effzoo.evaluation.predict.Predictor`: this module expands the INPUTs, prints the
rows as batches complete (a table on stdout, or rows in `--json`/`--csv` FILE), and ends with the
throughput and the list of files it could not read (exit code 1 when there were any; 2 for user
errors such as a missing path). Notices (no class names, a tiny image) are one line each on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from typing import Any, Sequence

# Below this many images a progress bar is noise; above it, a run takes long enough to want one.
PROGRESS_MIN_IMAGES = 100
RUNTIMES = ("torch", "onnxruntime")  # kept here too: `--help` must not import torch


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders (searched recursively for images), globs, or '-' for paths on stdin")
    p.add_argument("--checkpoint", required=True,
                   help="run folder, model.safetensors (+ model.json), Lightning .ckpt, shipped zoo name "
                        "(`effzoo zoo list`), or an exported .onnx file with model.json beside it")
    p.add_argument("--top-k", type=int, default=5, help="classes shown per classification head (default: 5)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", metavar="FILE", help="write JSON Lines (one object per image per line) instead of "
                     "the table; rows go to FILE.partial as they come, renamed to FILE at the end")
    out.add_argument("--csv", metavar="FILE", help="write CSV (one row per image) instead of the table; "
                     "streamed like --json")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="probability at which a multilabel head reports a label (default: 0.5)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    p.add_argument("--num-workers", type=int, default=None,
                   help="loader processes decoding images (default: 1 on up to 2 cores, else cores - 1, at most 8)")
    p.add_argument("--device", default="auto",
                   help="auto (a CUDA GPU when one is visible, else the CPU), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--runtime", choices=RUNTIMES, default=None,
                   help="torch, or onnxruntime (the exported file, or the checkpoint exported in memory; CPU). "
                        "Default: onnxruntime for an .onnx checkpoint, else torch")


def run(args: argparse.Namespace) -> int:
    # deferred: torch takes seconds to import; --help and argument errors must not wait
    from ..evaluation.predict import PredictWarning, Predictor
    from ..evaluation.predict_files import expand_inputs

    paths = expand_inputs(args.inputs, sys.stdin if "-" in args.inputs else None)
    with warnings.catch_warnings():
        _print_notices_as_lines(PredictWarning)
        predictor = Predictor(args.checkpoint, device=args.device, runtime=args.runtime, top_k=args.top_k,
                              batch_size=args.batch_size, num_workers=args.num_workers, threshold=args.threshold)
        start = time.perf_counter()
        errors = _predict_into(predictor, paths, args)
        seconds = time.perf_counter() - start
    _summary(predictor, len(paths), errors, seconds)
    return 1 if errors else 0


def _predict_into(predictor: Any, paths: list[str], args: argparse.Namespace) -> list[tuple[str, str]]:
    """Predict every path, writing rows as batches complete; the (path, reason) of each unreadable file."""
    from ..evaluation.predict_files import PredictionWriter

    label = "predict" if len(paths) > PROGRESS_MIN_IMAGES else None
    target = args.json or args.csv
    writer: Any = (PredictionWriter(target, "jsonl" if args.json else "csv", predictor.heads, predictor.top_k)
                   if target else _Table(predictor, paths))
    errors: list[tuple[str, str]] = []
    try:
        for batch in predictor.predict_batches(paths, progress=label):
            writer.write(batch)
            errors += [(p.source, p.error) for p in batch if p.error is not None]
    except BaseException:
        if target:  # keep what is done; the final name stays free of a half-written file
            writer.file.close()
            print(f"effzoo predict: stopped; the {writer.rows} rows written so far are in {writer.partial}",
                  file=sys.stderr)
        raise
    if target:
        path = writer.close()
        print(f"wrote {writer.rows:,} rows to {path}")
    return errors


def _summary(predictor: Any, total: int, errors: Sequence[tuple[str, str]], seconds: float) -> None:
    done = total - len(errors)
    rate = f"{done / seconds:,.0f} images/s" if seconds > 0 else "-"
    where = "ONNX Runtime, cpu" if predictor.runtime == "onnxruntime" else f"torch, {predictor.device}"
    print(f"effzoo predict: {done:,} images in {seconds:.1f} s ({rate}; {where}; "
          f"{predictor.image_size} px, batch {predictor.batch_size}, {_plural(predictor.num_workers, 'loader worker')})",
          file=sys.stderr)
    if errors:
        print(f"effzoo predict: skipped {_plural(len(errors), 'unreadable file')}:",
              file=sys.stderr)
        for path, reason in errors:
            print(f"  {path}: {reason}", file=sys.stderr)


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _print_notices_as_lines(category: type[Warning]) -> None:
    """Inside `warnings.catch_warnings()`: the predictor's notices as `effzoo predict: warning: ...` lines."""
    shown = warnings.showwarning

    def show(message: Any, cat: type[Warning], *rest: Any, **kw: Any) -> None:
        if issubclass(cat, category):
            print(f"effzoo predict: warning: {message}", file=sys.stderr, flush=True)
        else:
            shown(message, cat, *rest, **kw)

    warnings.simplefilter("always", category)  # the predictor itself says each thing once
    warnings.showwarning = show


class _Table:
    """A rich table printed batch by batch with fixed column widths, so the chunks read as one table:
    the image, then one column per head (top-k names and probabilities, labels, or the value)."""

    def __init__(self, predictor: Any, paths: Sequence[str]) -> None:
        from rich.console import Console

        self.heads, self.top_k = predictor.heads, predictor.top_k
        self.widths = [min(60, max(len("image"), *(len(p) for p in paths)))]
        for h in self.heads:
            names = h.names or [f"#{h.num_outputs - 1}"]
            self.widths.append(max(len(self._title(h)), max(len(n) for n in names) + 8, 10))
        needed = sum(self.widths) + 3 * len(self.widths) + 2
        self.console = Console() if sys.stdout.isatty() else Console(width=max(needed, 80))
        self.first = True

    def _title(self, head: Any) -> str:
        if head.kind == "classification":
            what = f"top {min(self.top_k, head.num_outputs)}"
            return what if head.name == "class" else f"{head.name} ({what})"
        return f"{head.name} ({head.kind})"

    def write(self, batch: Sequence[Any]) -> None:
        from rich import box
        from rich.table import Table
        from rich.text import Text

        # Multi-line cells (top-k, several heads) get a blank line between images, chunk boundaries included.
        spaced = any(h.kind != "regression" for h in self.heads) and self.top_k > 1
        if spaced and not self.first:
            self.console.print()
        table = Table(box=box.SIMPLE, show_header=self.first, show_edge=False, pad_edge=False, show_lines=spaced)
        table.add_column("image", width=self.widths[0], overflow="fold")
        for h, w in zip(self.heads, self.widths[1:]):
            table.add_column(self._title(h), width=w, no_wrap=True)
        for p in batch:
            # Text, not markup: a path or class name like "[b]" must print as written
            if p.error is not None:
                table.add_row(Text(p.source), Text("unreadable (listed below)", style="red"), *[""] * (len(self.heads) - 1))
            else:
                table.add_row(Text(p.source), *[Text(_cell(p.heads[h.name], w - 7)) for h, w in zip(self.heads, self.widths[1:])])
        self.console.print(table)
        self.first = False


def _cell(head: Any, name_width: int) -> str:
    """One head's answer: a line per class, the name padded so the probabilities line up."""
    if head.kind == "regression":
        values = head.value if isinstance(head.value, list) else [head.value]
        return ", ".join(f"{v:.4g}" for v in values)
    ranked = head.top_k if head.kind == "classification" else head.labels
    if not ranked:
        return "(none above threshold)"
    return "\n".join(f"{name if name is not None else f'#{i}':<{name_width}}{100 * prob:6.1f}%" for i, name, prob in ranked)

"""`effzoo export`: a checkpoint to ONNX or TorchScript, checked against the eager model's outputs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..export.formats import FORMATS, SUFFIXES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="output folder, .safetensors (+ .json), Lightning .ckpt, or a shipped zoo name (`effzoo zoo list`)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--output", default=None, help="output file (default: next to the checkpoint, "
                   + ", ".join(f"{k}: {v}" for k, v in SUFFIXES.items()) + ")")
    p.add_argument("--res", type=int, default=None, help="export/check resolution (default: the model's test size)")
    p.add_argument("--no-check", action="store_true", help="skip running the exported file against eager")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the report as JSON")


def default_output(checkpoint: str | Path, fmt: str) -> Path:
    ckpt = Path(checkpoint)
    if ckpt.is_dir():  # an `effzoo train` output folder: out/ -> out/model.onnx
        return ckpt / ("model" + SUFFIXES[fmt])
    return ckpt.with_name(ckpt.stem + SUFFIXES[fmt])  # out/model.safetensors -> out/model.onnx


def run(args: argparse.Namespace) -> int:
    # deferred: torch/Lightning take seconds to import; --help and argument errors must not wait
    from ..artifacts.weights import load_checkpoint
    from ..artifacts.zoo_index import resolve_checkpoint
    from ..export.onnx import export_model

    ckpt, zoo_name = resolve_checkpoint(args.checkpoint)
    # A shipped model's folder stays as indexed: its export goes to runs/<zoo name>/.
    zoo_output = Path("runs") / zoo_name / ("model" + SUFFIXES[args.format]) if zoo_name else None
    output = Path(args.output) if args.output else zoo_output or default_output(ckpt, args.format)
    if output.resolve() == ckpt.resolve():
        raise ValueError(f"--output {output} would overwrite the checkpoint")
    model = load_checkpoint(ckpt)
    report = export_model(model, args.format, output, args.res, check=not args.no_check)
    # relative, as the check itself is: an absolute difference on large logits looks like a failure when it is not
    checked = (f"checked with {report['checked_with']}: max difference {report['max_rel_diff']:.1e} of the output "
               f"scale (tolerance {report['rtol']:.0e})" if report.get("checked_with") else "not checked")
    print(f"wrote {report['path']} ({report['format']}, {report['bytes'] / 1e6:.2f} MB, input "
          f"(N, {', '.join(map(str, report['input_size']))}), dynamic batch); {checked}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0

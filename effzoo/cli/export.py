"""`effzoo export`: a checkpoint to ONNX or TorchScript, checked against the eager model's outputs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..export.formats import FORMATS, SUFFIXES

QUANTIZE = ("int8",)
# int8 options, and their defaults: given without --quantize they would be silently ignored.
INT8_OPTIONS = {"calibration_data": None, "data_dir": None, "calibration_images": 256, "max_drop": 1.0, "force": False}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="output folder, .safetensors (+ .json), Lightning .ckpt, or a shipped zoo name (`effzoo zoo list`)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--output", default=None, help="output file (default: next to the checkpoint, "
                   + ", ".join(f"{k}: {v}" for k, v in SUFFIXES.items()) + ")")
    p.add_argument("--res", type=int, default=None, help="export/check resolution (default: the model's test size)")
    p.add_argument("--no-check", action="store_true", help="skip running the exported file against eager")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the report as JSON")
    q = p.add_argument_group("int8 (ONNX only)")
    q.add_argument("--quantize", choices=QUANTIZE, default=None,
                   help="also write an int8 copy beside the float file (model.onnx -> model.int8.onnx, with "
                        "model.int8.json), calibrated on training images; kept only if it passes the accuracy check")
    q.add_argument("--calibration-data", metavar="DATA", default=None,
                   help="data to calibrate on (training split) and check on (val split); default: the data the "
                        "checkpoint was trained on, with that run's splits")
    q.add_argument("--data-dir", default=None, help="where the calibration data's files are (fashion-mnist)")
    q.add_argument("--calibration-images", type=int, default=256, metavar="N", help="calibration images (default 256)")
    q.add_argument("--max-drop", type=float, default=1.0, metavar="POINTS",
                   help="refuse the int8 file when its val top-1 is more than this many points below float (default 1.0)")
    q.add_argument("--force", action="store_true", help="write the int8 file even when it fails the accuracy check")


def default_output(checkpoint: str | Path, fmt: str) -> Path:
    ckpt = Path(checkpoint)
    if ckpt.is_dir():  # an `effzoo train` output folder: out/ -> out/model.onnx
        return ckpt / ("model" + SUFFIXES[fmt])
    return ckpt.with_name(ckpt.stem + SUFFIXES[fmt])  # out/model.safetensors -> out/model.onnx


def run(args: argparse.Namespace) -> int:
    # deferred: torch/Lightning take seconds to import; --help and argument errors must not wait
    from ..artifacts.weights import load_checkpoint
    from ..artifacts.zoo_index import resolve_checkpoint, zoo_output_folder
    from ..export.onnx import export_model

    check_int8_options(args)
    ckpt, zoo_name = resolve_checkpoint(args.checkpoint)
    # A shipped model's folder stays as indexed: its export goes to runs/<zoo name>/.
    zoo_output = zoo_output_folder(zoo_name) / ("model" + SUFFIXES[args.format]) if zoo_name else None
    output = Path(args.output) if args.output else zoo_output or default_output(ckpt, args.format)
    if output.resolve() == ckpt.resolve():
        raise ValueError(f"--output {output} would overwrite the checkpoint")
    model = load_checkpoint(ckpt)
    if args.quantize:
        return export_int8_files(args, ckpt, zoo_name, model, output)
    report = export_model(model, args.format, output, args.res, check=not args.no_check)
    # relative, as the check itself is: an absolute difference on large logits looks like a failure when it is not
    checked = (f"checked with {report['checked_with']}: max difference {report['max_rel_diff']:.1e} of the output "
               f"scale (tolerance {report['rtol']:.0e})" if report.get("checked_with") else "not checked")
    print(f"wrote {report['path']} ({report['format']}, {report['bytes'] / 1e6:.2f} MB, input "
          f"(N, {', '.join(map(str, report['input_size']))}), dynamic batch); {checked}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def check_int8_options(args: argparse.Namespace) -> None:
    """int8 needs ONNX, and the int8 options mean nothing without --quantize: say so instead of ignoring them."""
    if args.quantize and args.format != "onnx":
        raise ValueError(f"--quantize {args.quantize} writes an ONNX file: use --format onnx")
    if args.quantize and args.no_check:
        raise ValueError("--quantize always checks the float file against eager and the int8 file's accuracy: "
                         "drop --no-check")
    given = [name for name, default in INT8_OPTIONS.items() if getattr(args, name) != default]
    if given and not args.quantize:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ValueError(f"{flags} only apply to an int8 export: add --quantize int8")


def export_int8_files(args: argparse.Namespace, ckpt: Path, zoo_name: str | None, model, output: Path) -> int:
    # deferred: see run()
    from ..export.quantize import calibration_datamodule, checkpoint_metadata, export_int8

    data, dm = calibration_datamodule(model, ckpt, args.calibration_data, data_dir=args.data_dir)
    report = export_int8(model, output, dm, resolution=args.res, calibration_images=args.calibration_images,
                         max_drop=args.max_drop, force=args.force, meta=checkpoint_metadata(ckpt, model),
                         data_label=data)
    acc = report["quantization"]["accuracy"]
    forced = ", kept by --force" if acc["drop"] > acc["max_drop"] else ""
    print(f"wrote {report['path']} (float, {report['bytes'] / 1e6:.2f} MB; checked with {report['checked_with']}: "
          f"max difference {report['max_rel_diff']:.1e} of the output scale)")
    print(f"wrote {report['int8_path']} (int8, {report['int8_bytes'] / 1e6:.2f} MB) and {report['int8_metadata']}: "
          f"val top-1 {acc['int8_top1']:.2f}% vs {acc['float_top1']:.2f}% float on {acc['images']} images of {data} "
          f"(drop {acc['drop']:.2f} points, allowed {acc['max_drop']:g}{forced}; same top-1 class on {acc['agreement']:.1f}%)")
    refresh_card(output, zoo_name)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def refresh_card(output: Path, zoo_name: str | None) -> None:
    """Show the int8 check on the card: rewrite a run folder's card (it reads model.int8.json beside it);
    a shipped model's card lives in the indexed folder, so say how to make its copy in runs/<name>/."""
    from ..artifacts.cards import write_model_card  # deferred: see run()
    from ..artifacts.weights import MODEL_META
    from ..artifacts.zoo_index import zoo_output_folder

    folder = output.parent
    if output.name != "model.onnx":  # the card reads model.int8.json only
        return
    if zoo_name:
        if folder.resolve() == zoo_output_folder(zoo_name).resolve():
            print(f"the card shows the int8 check once regenerated: effzoo card --checkpoint {zoo_name}")
    elif (folder / MODEL_META).is_file() and (folder / "model_card.md").is_file():
        card = write_model_card(folder, json.loads((folder / MODEL_META).read_text()))
        print(f"updated {card} with the int8 check")

"""`effzoo card --checkpoint DIR [--evaluate]`: regenerate a model's card, factsheet and datasheet copy.

The card is always rebuilt from `model.json` (plus `analysis.json`, `fixres.json` and the zoo index
entry where they exist). `--evaluate` first measures per-class accuracy on the test split and top-1
at a few resolutions, and stores them in `analysis.json` for this and later cards.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="an output folder (model.safetensors + model.json), its model.safetensors, or a zoo name")
    p.add_argument("--output", default=None, metavar="DIR",
                   help="folder for the card (default: the checkpoint's folder; runs/<name>/ for a zoo name, "
                        "whose shipped folder is never written)")
    p.add_argument("--data", default=None, help="dataset for --evaluate (default: the one the model was trained on)")
    p.add_argument("--data-dir", default=None, help="where the dataset files are (fashion-mnist IDX files)")
    p.add_argument("--evaluate", action="store_true",
                   help="measure per-class test accuracy and top-1 at several resolutions first (writes analysis.json)")
    p.add_argument("--res", default=None, metavar="R1,R2,...",
                   help="resolutions for --evaluate (default: train, test, and 0.75/1.25/1.5x test)")
    p.add_argument("--split", default="test", choices=("val", "test"), help="split for --evaluate (default: test)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-workers", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    # deferred: torch/Lightning take seconds to import; --help and argument errors must not wait
    from ..artifacts.cards import write_model_card
    from ..artifacts.weights import MODEL_META
    from ..evaluation.card_analysis import run_analysis
    from ..evaluation.evaluate import parse_resolutions
    from ..evaluation.progress import reporting

    folder = card_folder(args.checkpoint, args.output)
    if args.evaluate:
        res = parse_resolutions(args.res) if args.res else None
        with reporting("card --evaluate"):  # progress of the resolution sweep run_analysis runs
            a = run_analysis(folder, args.data, split=args.split, resolutions=res, data_dir=args.data_dir,
                             batch_size=args.batch_size, num_workers=args.num_workers)
        tops = ", ".join(f"{r['resolution']} px {r['top1']:.2f}%" for r in a["resolutions"])
        print(f"effzoo card: {a['split']} top-1 by resolution: {tops}")
    card = write_model_card(folder, json.loads((folder / MODEL_META).read_text()))
    print(f"effzoo card: wrote {card}, {folder / 'factsheet.json'}")
    return 0


def card_folder(checkpoint: str, output: str | None) -> Path:
    """The folder the card is written in: the run's own, or a copy of the model's files in `output`
    (runs/<name>/ for a zoo name), so a shipped folder keeps the files its index vouches for."""
    import shutil

    from ..artifacts.zoo_index import SHIPPED_FILES, resolve_export_folder, zoo_output_folder

    folder, zoo_name = resolve_export_folder(checkpoint)
    target = Path(output) if output else (zoo_output_folder(zoo_name) if zoo_name else folder)
    if target.resolve() != folder.resolve():
        target.mkdir(parents=True, exist_ok=True)
        for name in (*SHIPPED_FILES, "analysis.json"):
            if (folder / name).is_file():
                shutil.copy2(folder / name, target / name)
    return target

"""Add a trained run to the zoo: copy its exported files, measure what its card reports, write the card and
factsheet, and index every file's sha256 (`effzoo zoo add`)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..artifacts.cards import write_model_card
from ..artifacts.shipped import register_shipped_models
from ..artifacts.weights import build_from_metadata
from ..artifacts.zoo_index import (INDEX_NAME, META, REPO_ROOT, SHIPPED_FILES, WEIGHTS, checkpoints_dir, code_revision,
                                   index_entry, read_index, write_index)
from ..models import model_info
from .card_analysis import run_analysis


def add_model(run: str | os.PathLike, name: str, commands: list[str], *, root: str | os.PathLike | None = None,
              seconds: float | None = None, hardware: str | None = None, evaluate: bool = False,
              data_dir: str | None = None) -> dict[str, Any]:
    """Copy a run's exported files into `root/name`, write its card and factsheet, and index it."""
    run, base = Path(run), Path(root) if root is not None else (checkpoints_dir() or REPO_ROOT / "checkpoints")
    if not (run / WEIGHTS).is_file() or not (run / META).is_file():
        raise FileNotFoundError(f"{run} has no {WEIGHTS} + {META}: give an `effzoo train` output folder")
    dest = base / name
    if dest.resolve() != run.resolve():
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for fname in SHIPPED_FILES:
            if (run / fname).is_file():
                shutil.copy2(run / fname, dest / fname)
    models = read_index(base)["models"] if (base / INDEX_NAME).is_file() else {}
    if not commands:  # re-indexing a model already in the zoo (e.g. after `effzoo card --evaluate`): keep its record
        if name not in models:
            raise ValueError(f"{name!r} is new to the zoo: give the exact command(s) that built it with --command")
        old = models[name]["reproduce"]
        commands, seconds, hardware = old["commands"], seconds or old.get("train_seconds"), hardware or old.get("hardware")
        revision = old.get("code_revision")  # the code that trained it, not today's
    else:
        revision = code_revision()
    test_macs = _test_macs(dest)
    # Index first (without card digests) so the card can read its own entry: name, commands.
    models[name] = index_entry(name, dest, commands, seconds, hardware, revision, test_macs)
    write_index(base, models)
    if evaluate:
        run_analysis(dest, data_dir=data_dir)
    write_model_card(dest, json.loads((dest / META).read_text()))
    models[name] = index_entry(name, dest, commands, seconds, hardware, revision, test_macs)
    write_index(base, models)
    register_shipped_models(root)
    return models[name]


def _test_macs(folder: Path) -> int:
    """MACs per image at the model's test resolution (the cost of inference; FixRes models differ from train)."""
    meta = json.loads((folder / META).read_text())
    model = build_from_metadata(meta["model_name"], meta.get("model_args", {}), meta.get("pretrained_cfg", {}), str(folder))
    return model_info(model, tuple(model.pretrained_cfg["test_input_size"]))["macs"]

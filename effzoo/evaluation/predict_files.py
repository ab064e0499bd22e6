"""The files around `Predictor`: image paths from `effzoo predict`'s INPUTs, and its rows written out.

`PredictionWriter` writes JSON Lines (one object per image per line) or CSV (one row per image) as
batches complete, to `FILE.partial`, renamed to `FILE` when every image is done: the rows are on disk
while the run goes on, a run that stops leaves its rows in `FILE.partial`, and `FILE` itself is never
half-written.
"""

from __future__ import annotations

import csv
import glob
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..data.datasets import IMAGE_EXTENSIONS
from ..data.image_folder import list_images
from .predict import SINGLE_HEAD, Head, Prediction


def expand_inputs(inputs: Sequence[str], stdin: Iterable[str] | None = None) -> list[str]:
    """Image paths from command-line INPUTs: files, folders (recursive, image extensions), globs, and `-`
    (one path per line of `stdin`). Missing paths, empty folders and unmatched globs are errors naming them."""
    found: list[str] = []
    missing: list[str] = []
    for item in inputs:
        lines = [line.strip() for line in (stdin or [])] if item == "-" else [item]
        for entry in (line for line in lines if line):
            paths = _expand(entry)
            if paths is None:
                missing.append(entry)
            found += paths or []
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise FileNotFoundError(f"input not found: {', '.join(missing[:3])}{more}: no such file, folder or glob match")
    if not found:
        raise ValueError("no input images: pass files, folders or globs, or '-' with paths on stdin")
    return list(dict.fromkeys(found))  # once each, in the order given


def _expand(entry: str) -> list[str] | None:
    path = Path(entry).expanduser()
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise ValueError(f"folder {entry} holds no images ({', '.join(IMAGE_EXTENSIONS)}, searched recursively)")
        return files
    if path.exists():
        return [entry]  # a file named explicitly is tried whatever its extension
    if glob.has_magic(entry):
        matches = sorted(glob.glob(os.path.expanduser(entry), recursive=True))
        files = [f for m in matches for f in (list_images(Path(m)) if os.path.isdir(m) else [m])]
        return files or None
    return None


class PredictionWriter:
    """Rows streamed to `FILE.partial` as batches come, renamed to `path` by `close()`.

    `fmt` "jsonl": one JSON object per image per line (`Prediction.to_dict()`). "csv": one row per
    image with `columns(heads, top_k)`. Each `write` flushes, so a reader sees every finished batch.
    Leaving the `with` block on an exception keeps `FILE.partial` (the rows so far) and leaves `path` alone.
    """

    def __init__(self, path: str | os.PathLike, fmt: str, heads: Sequence[Head], top_k: int) -> None:
        if fmt not in ("jsonl", "csv"):
            raise ValueError(f"unknown output format {fmt!r}: jsonl or csv")
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.fmt, self.heads, self.top_k = fmt, list(heads), top_k
        self.rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.partial, "w", newline="" if fmt == "csv" else None, encoding="utf-8")
        self.csv = csv.writer(self.file) if fmt == "csv" else None
        if self.csv is not None:
            self.csv.writerow(columns(self.heads, top_k))

    def write(self, predictions: Iterable[Prediction]) -> None:
        for p in predictions:
            if self.csv is not None:
                self.csv.writerow(csv_row(p, self.heads, self.top_k))
            else:
                self.file.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
            self.rows += 1
        self.file.flush()

    def close(self) -> Path:
        """Finish: `FILE.partial` becomes `FILE` (fsynced first, so a crash cannot leave an empty `FILE`)."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.partial, self.path)
        return self.path

    def __enter__(self) -> "PredictionWriter":
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.file.close()  # the rows so far stay in FILE.partial


def columns(heads: Sequence[Head], top_k: int) -> list[str]:
    """CSV header: path, then per head (prefixed `HEAD_` for multi-task models) top-k index/name/probability,
    the multilabel labels and their probabilities (`;`-joined), or the regression value(s); last, error."""
    out = ["path"]
    for h in heads:
        prefix = "" if h.name == SINGLE_HEAD else f"{h.name}_"
        if h.kind == "classification":
            for rank in range(1, min(top_k, h.num_outputs) + 1):
                out += [f"{prefix}top{rank}_index", f"{prefix}top{rank}_name", f"{prefix}top{rank}_probability"]
        elif h.kind == "multilabel":
            out += [f"{prefix}labels", f"{prefix}label_probabilities"]
        else:
            out += [f"{prefix}value"] if h.num_outputs == 1 else [f"{prefix}value{i}" for i in range(h.num_outputs)]
    return out + ["error"]


def csv_row(p: Prediction, heads: Sequence[Head], top_k: int) -> list[Any]:
    row: list[Any] = [p.source]
    for h in heads:
        r = p.heads.get(h.name)
        if h.kind == "classification":
            ranked = r.top_k if r else []
            for rank in range(min(top_k, h.num_outputs)):
                row += list(ranked[rank]) if rank < len(ranked) else ["", "", ""]
        elif h.kind == "multilabel":
            labels = r.labels if r else []
            row += [";".join(n if n is not None else str(i) for i, n, _ in labels), ";".join(str(q) for *_, q in labels)]
        else:
            value = r.value if r else None
            values = value if isinstance(value, list) else [value] * (h.num_outputs == 1)
            row += ["" if v is None else v for v in values] or [""] * h.num_outputs
    return row + [p.error or ""]

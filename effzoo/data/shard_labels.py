"""An image folder's labels.csv columns in a shard folder: `<split>-labels.csv` beside the tars.

The file has the labels.csv layout (effzoo.data.labels_csv) with the sample's key in the tars (`000000123`)
in place of the image path, rows in key order, cells copied as they were. Read back, it becomes the same
`LabelTable` the folder gave, keyed by `<split>/<key>`, which is what a `ShardDataset` gives as each
sample's path: multi-task training, mtl-report and the label checks then work on shards as on the folder.
The labels stay beside the tars, not inside them, because only multi-task training reads them (by random
access); the stream carries images and classes only.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

from ..artifacts.atomic import atomic_write
from .labels_csv import LabelTable


def sample_key(index: int) -> str:
    """A sample's key in its split's tars (WebDataset's `__key__`): its index, zero-padded."""
    return f"{index:09d}"


def sample_path(split: str, key: str) -> str:
    return f"{split}/{key}"


def labels_file(split: str) -> str:
    return f"{split}-labels.csv"


def write_split_labels(output: Path, split: str, table: LabelTable, paths: Sequence[str]) -> dict[str, Any]:
    """`<split>-labels.csv` of the samples whose image files are `paths` (the split's order); its record."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", *table.columns])
    for i, path in enumerate(paths):
        writer.writerow([sample_key(i), *table.rows[str(path)][1]])
    data = buffer.getvalue().encode("utf-8")
    target = atomic_write(output / labels_file(split), lambda tmp: Path(tmp).write_bytes(data))
    return {"file": target.name, "bytes": len(data), "columns": list(table.columns)}


def read_split_labels(file: Path, split: str, count: int) -> LabelTable:
    """The `LabelTable` of a `<split>-labels.csv`, keyed as `ShardDataset.paths` are; checked against the split."""
    with open(file, newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))
    if not lines or lines[0][:1] != ["file"]:
        raise ValueError(f"{file}: not a shard labels file (its header should start with 'file'); write the shards again")
    header = lines[0]
    table = LabelTable(Path(file), header[1:])
    for n, row in enumerate(lines[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"{file} line {n}: {len(row)} cells for {len(header)} columns; write the shards again")
        table.rows[sample_path(split, row[0])] = (n, row[1:])
    if set(table.rows) != {sample_path(split, sample_key(i)) for i in range(count)}:
        raise ValueError(f"{file} has {len(table.rows)} rows, not one for each of the {count} {split} samples; write "
                         "the shards again")
    return table

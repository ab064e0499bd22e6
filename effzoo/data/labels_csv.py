"""`labels.csv`: your own per-image labels for multi-task heads, one file per split folder.

An image folder's split folder (``train/``, ``val/``, ``test/``) may hold a ``labels.csv``::

    file,species,age_years,tags
    cat/001.png,siamese,3.5,indoor|sleeping
    dog/002.png,beagle,,outdoor

The header names the columns; the first column is the image's path relative to the split folder,
every other column is one label source. An empty cell is a missing label (masked in the loss,
as every missing label is). How a column is read depends on the task that names it:

- classification: integers are class indices (0 <= i < outputs); anything else is a class name,
  and the names, sorted, are the classes (or the task's own `class_names` order, when given);
- multilabel: ``a|b|c`` lists the positive labels (names, or indices when all are integers);
  a cell holding only ``|`` says "labelled, none of them";
- regression: a number, or ``x|y|...`` for a head of several outputs.

Names are collected from the train split only, and saved with the task (`TaskSpec.class_names`),
so a reloaded model names each head's outputs; a name that only val or test uses is an error.

Everything is read and checked before training starts: rows naming files that are not there,
images without a row, a column a task names that is missing, a value of the wrong type -- each
is one `ValueError` naming the file, the line and the column, never a half-read label set.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import torch

from ..tasks import BUILTIN_SOURCES, TaskSpec

LABELS_CSV = "labels.csv"
SEPARATOR = "|"
# How many offending rows or files a message lists before "and N more".
EXAMPLES = 3


@dataclass
class LabelTable:
    """One split's `labels.csv`: its columns and, per image path (as the folder scan spells it),
    the line number and the raw cells of its row."""

    file: Path
    columns: list[str]
    rows: dict[str, tuple[int, list[str]]] = field(default_factory=dict)


def _examples(items: Sequence[str]) -> str:
    more = f", and {len(items) - EXAMPLES} more" if len(items) > EXAMPLES else ""
    return "; ".join(items[:EXAMPLES]) + more


def _relative(path: str, folder: Path) -> str:
    return Path(os.path.relpath(path, folder)).as_posix()


def read_label_table(file: str | os.PathLike, images: Sequence[str]) -> LabelTable:
    """Read `file` (a split folder's labels.csv) and match its rows with `images`, the image files
    found in that folder. Every image needs exactly one row and every row an existing image."""
    file = Path(file)
    folder = file.parent
    with file.open(newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets often write a BOM
        lines = [(n, row) for n, row in enumerate(csv.reader(f), start=1) if any(c.strip() for c in row)]
    if not lines:
        raise ValueError(f"{file} is empty; expected a header row (file,<label column>,...) and one row per image")
    header = [c.strip() for c in lines[0][1]]
    columns = header[1:]
    if not columns:
        raise ValueError(f"{file}: the header {header} names no label column after the file column")
    blank = [str(i + 2) for i, c in enumerate(columns) if not c]
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if blank or dup:
        raise ValueError(f"{file}: header columns must have distinct, non-empty names "
                         f"(empty: column {', '.join(blank) or '-'}; repeated: {', '.join(dup) or '-'})")
    by_rel = {_relative(p, folder): p for p in images}
    table, missing, seen = LabelTable(file, columns), [], {}
    for n, row in lines[1:]:
        if len(row) != len(header):
            raise ValueError(f"{file} line {n}: {len(row)} cells, but the header has {len(header)}; "
                             "every row needs the file and one cell per column (empty for a missing label)")
        rel = Path(os.path.normpath(row[0].strip().replace("\\", "/"))).as_posix()
        if rel in seen:
            raise ValueError(f"{file} line {n}: {rel} already has a row (line {seen[rel]}); one row per image")
        seen[rel] = n
        if rel not in by_rel:
            missing.append(f"line {n}: {row[0].strip()}")
            continue
        table.rows[by_rel[rel]] = (n, [c.strip() for c in row[1:]])
    if missing:
        raise ValueError(f"{file}: {len(missing)} row(s) name no image file in {folder} ({_examples(missing)}); "
                         "paths are relative to the split folder: fix them or delete the rows")
    unlisted = sorted(rel for rel, p in by_rel.items() if p not in table.rows)
    if unlisted:
        raise ValueError(f"{file} has no row for {len(unlisted)} image(s) in {folder} ({_examples(unlisted)}); "
                         "add a row for each (empty cells for unknown labels) or move the images out")
    return table


# -- from columns to task labels ----------------------------------------------------------------

def resolve_sources(tasks: Sequence[TaskSpec], tables: Mapping[str, LabelTable], has_classes: bool) -> list[TaskSpec]:
    """Tasks with their label sources settled against the tables' columns.

    A task on `label` whose name is a column reads that column; an explicit source that is no
    built-in must be a column of every split's table. `label` itself needs class subfolders."""
    train = tables["train"]
    out = []
    for t in tasks:
        if t.source == "label" and t.name in train.columns:
            t = replace(t, source=t.name)
        if t.source == "label" and not has_classes:
            raise ValueError(f"task {t.name!r} reads the folder's classes (source 'label'), but {train.file.parent} "
                             f"has no class subfolders; give it a column of {train.file} as its source, e.g. "
                             f"{t.name}:{t.kind}:{t.num_outputs}:{t.weight:g}:COLUMN "
                             f"(columns: {', '.join(train.columns)})")
        if t.source not in BUILTIN_SOURCES:
            for table in tables.values():
                if t.source not in table.columns:
                    raise ValueError(f"task {t.name!r} reads column {t.source!r}, which {table.file} does not have "
                                     f"(columns: {', '.join(table.columns)})")
        out.append(t)
    return out


def _cells(table: LabelTable, column: str) -> list[tuple[int, str]]:
    """(line number, cell) of every row, in the table's row order."""
    i = table.columns.index(column)
    return [(n, cells[i]) for n, cells in table.rows.values()]


def _bad(table: LabelTable, column: str, problems: list[str], what: str, fix: str) -> ValueError:
    return ValueError(f"{table.file} column {column!r}: {len(problems)} {what} ({_examples(problems)}); {fix}")


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _tokens(cell: str) -> list[str]:
    return [tok.strip() for tok in cell.split(SEPARATOR) if tok.strip()]


def _vocabulary(spec: TaskSpec, table: LabelTable, values: list[str]) -> tuple[str, ...] | None:
    """The names of the head's outputs in order, or None when the column holds indices."""
    if spec.class_names is None and values and all(_is_int(v) for v in values):
        return None
    found = sorted(set(values))
    if spec.class_names is not None:
        unknown = [v for v in found if v not in spec.class_names]
        if unknown:
            raise _bad(table, spec.source, [repr(v) for v in unknown], "name(s) missing from the task's class_names",
                       f"it names {', '.join(spec.class_names)}: add them there or fix the cells")
        return spec.class_names
    if len(found) != spec.num_outputs:
        shown = ", ".join(found[:10]) + (", ..." if len(found) > 10 else "")
        raise ValueError(f"{table.file} column {spec.source!r} holds {len(found)} distinct names ({shown}) but task "
                         f"{spec.name!r} has {spec.num_outputs} outputs; use {spec.name}:{spec.kind}:{len(found)}")
    return tuple(found)


def _index(spec: TaskSpec, n: int, value: str, names: tuple[str, ...] | None, problems: list[str]) -> int:
    """One class index; a problem (unknown name, out-of-range index) is noted, not raised."""
    if names is not None:
        if value in names:
            return names.index(value)
        problems.append(f"line {n}: {value!r}")
        return -1
    if _is_int(value) and 0 <= int(value) < spec.num_outputs:
        return int(value)
    problems.append(f"line {n}: {value!r}")
    return -1


def _encode(spec: TaskSpec, table: LabelTable, names: tuple[str, ...] | None) -> torch.Tensor:
    """The column of `spec` as the tensor the losses read (-1 / NaN where the cell is empty)."""
    cells = _cells(table, spec.source)
    problems: list[str] = []
    k = spec.num_outputs
    if spec.kind == "regression":
        out = torch.full((len(cells), k), math.nan)
        for row, (n, cell) in enumerate(cells):
            if cell:
                out[row] = torch.tensor(_numbers(cell, k, n, problems))
        if problems:
            form = "a number" if k == 1 else f"{k} numbers {'|'.join(['x'] * k)}"
            raise _bad(table, spec.source, problems, f"cell(s) that are not {form}",
                       f"a regression cell holds {form}, or nothing for a missing label")
        return out[:, 0] if k == 1 else out
    if spec.kind == "classification":
        out = torch.tensor([_index(spec, n, cell, names, problems) if cell else -1 for n, cell in cells])
    else:
        out = torch.full((len(cells), k), math.nan)
        for row, (n, cell) in enumerate(cells):
            if cell:
                out[row] = 0.0
                for tok in _tokens(cell):
                    i = _index(spec, n, tok, names, problems)
                    if i >= 0:
                        out[row, i] = 1.0
    if problems:
        if names is None:
            raise _bad(table, spec.source, problems, f"value(s) that are not class indices 0..{k - 1}",
                       "the train split's cells are all integers, so every cell must be a class index")
        raise _bad(table, spec.source, problems, "name(s) the train split never uses",
                   f"the classes are the train split's names ({', '.join(names)}): add such images to train "
                   "or fix the names")
    return out.long() if spec.kind == "classification" else out


def _numbers(cell: str, k: int, n: int, problems: list[str]) -> list[float]:
    parts = [p.strip() for p in cell.split(SEPARATOR)]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != k or not all(math.isfinite(v) for v in values):
        problems.append(f"line {n}: {cell!r}")
        return [math.nan] * k
    return values


@dataclass
class CsvLabels:
    """The tasks read from labels.csv columns, their label tensors per split, and each image's row."""

    tasks: list[TaskSpec]  # every task, with sources resolved and the CSV tasks' class names filled in
    columns: list[str]  # the train table's label columns
    values: dict[str, dict[str, torch.Tensor]]  # split -> task name -> labels in table row order
    rows: dict[str, dict[str, int]]  # split -> image path -> row

    @property
    def task_names(self) -> set[str]:
        return {name for by_task in self.values.values() for name in by_task}

    def lookup(self, split: str, paths: Sequence[str]) -> dict[str, torch.Tensor]:
        """{task: labels} of the images `paths` (a dataset's files, in its order) of `split`."""
        index = self.rows[split]
        order = torch.tensor([index[str(p)] for p in paths], dtype=torch.long)
        return {name: labels[order] for name, labels in self.values[split].items()}


def encode_label_tables(tables: Mapping[str, LabelTable], tasks: Sequence[TaskSpec],
                        has_classes: bool = True) -> CsvLabels:
    """Read every column the tasks name, in every split, with names fixed by the train split."""
    tasks = resolve_sources(tasks, tables, has_classes)
    values: dict[str, dict[str, torch.Tensor]] = {split: {} for split in tables}
    resolved = []
    for t in tasks:
        if t.source in BUILTIN_SOURCES:
            resolved.append(t)
            continue
        names = None
        if t.kind != "regression":
            train = tables["train"]
            seen = [tok for _, cell in _cells(train, t.source) if cell
                    for tok in (_tokens(cell) if t.kind == "multilabel" else [cell])]
            names = _vocabulary(t, train, seen)
            t = replace(t, class_names=names)
        for split, table in tables.items():
            values[split][t.name] = _encode(t, table, names)
        resolved.append(t)
    rows = {split: {p: i for i, p in enumerate(table.rows)} for split, table in tables.items()}
    return CsvLabels(resolved, list(tables["train"].columns), values, rows)

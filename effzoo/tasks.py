"""Task specifications: what each head predicts, where its labels come from, and how much it weighs.

A task list is written once (CLI string, YAML file or Python) and travels everywhere else as
`TaskSpec` objects: the model builds one head per spec, the losses pick the loss by `kind`, the
weightings start from `weight`, and the checkpoint stores `to_dict()` so a saved model knows its
heads. The first task is the *main* task (the one the transfer report and model selection care
about most); the rest are auxiliary.

CLI grammar (`--tasks`)::

    SPEC   := TASK ("," TASK)*
    TASK   := NAME ":" KIND ":" OUTPUTS [":" WEIGHT [":" SOURCE]]
    KIND   := classification | multilabel | regression      (aliases: cls, multi-label, reg)
    SOURCE := label | coarse | rotation | random["@"SEED] | <any other name: an extra label array>

e.g. ``fine:classification:10:1.0,coarse:classification:4:0.5,noise:cls:10:1:random@3``.
WEIGHT defaults to 1. SOURCE defaults to NAME when NAME is a built-in label maker (`coarse`,
`rotation`, `random`), else to `label` (the dataset's own target) -- so the common cases need
no fifth field. An image folder's `labels.csv` provides one extra label array per column: a
SOURCE naming a column reads it (``age:reg:1:0.5:age_years``), and a task left on `label`
whose NAME is a column reads that column (``species:cls:37``; see `effzoo.data.labels_csv`).

`class_names` (optional) names a classification head's classes or a multi-label head's labels,
in output order; a labels.csv column of names fills it, so a saved model names its outputs.
Each kind has one evaluation metric (`TASK_METRICS`), logged as ``{split}_{task}_{metric}``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

import yaml

KINDS = ("classification", "multilabel", "regression")
_KIND_ALIASES = {"cls": "classification", "multi-label": "multilabel", "reg": "regression"}
#: Label sources this package knows how to make; anything else must be supplied by the data.
BUILTIN_SOURCES = ("label", "coarse", "rotation", "random")
#: Head sizes forced by a built-in source (coarse: 4 garment groups; rotation: 0/90/180/270).
FIXED_SOURCE_OUTPUTS = {"coarse": 4, "rotation": 4}
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FIELDS = ("name", "kind", "num_outputs", "weight", "source", "seed", "class_names")
#: kind -> (metric name, +1 if higher is better else -1): top-1 accuracy, micro-averaged average
#: precision over all (image, label) pairs, mean absolute error.
TASK_METRICS = {"classification": ("top1", 1), "multilabel": ("map", 1), "regression": ("mae", -1)}


@dataclass(frozen=True)
class TaskSpec:
    """One task: a head of `num_outputs` units trained with the loss of `kind`.

    `source` says where the labels come from (see module docstring); `seed` only matters for
    `random` (a fixed random label per sample, so the task is learnable-by-memorization but
    unrelated to the image -- the deliberate negative-transfer probe).
    """

    name: str
    kind: str = "classification"
    num_outputs: int = 2
    weight: float = 1.0
    source: str = "label"
    seed: int = 0
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # Validate at construction so a bad spec fails where it was written, not mid-training.
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(f"task name {self.name!r} must be an identifier (letters, digits, _), "
                             "since it names a head module and a log key")
        kind = _KIND_ALIASES.get(str(self.kind).lower(), str(self.kind).lower())
        if kind not in KINDS:
            raise ValueError(f"task {self.name!r}: unknown kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        object.__setattr__(self, "kind", kind)
        n = self.num_outputs
        if isinstance(n, bool) or not isinstance(n, int):
            raise ValueError(f"task {self.name!r}: num_outputs must be an integer, got {n!r}")
        minimum = 2 if kind == "classification" else 1
        if n < minimum:
            raise ValueError(f"task {self.name!r}: a {kind} head needs num_outputs >= {minimum}, got {n}")
        try:
            w = float(self.weight)
        except (TypeError, ValueError):
            raise ValueError(f"task {self.name!r}: weight must be a number, got {self.weight!r}") from None
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"task {self.name!r}: weight must be finite and >= 0, got {self.weight!r}")
        object.__setattr__(self, "weight", w)
        if not isinstance(self.source, str) or not self.source:
            raise ValueError(f"task {self.name!r}: source must be a non-empty string, got {self.source!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"task {self.name!r}: seed must be an integer, got {self.seed!r}")
        fixed = FIXED_SOURCE_OUTPUTS.get(self.source)
        if fixed is not None and (kind != "classification" or n != fixed):
            raise ValueError(f"task {self.name!r}: source {self.source!r} gives {fixed}-class classification "
                             f"labels, but the head is {kind} with {n} outputs")
        if self.source == "random" and kind != "classification":
            raise ValueError(f"task {self.name!r}: source 'random' makes classification labels, not {kind}")
        if self.class_names is not None:
            self._check_class_names(kind, n)

    def _check_class_names(self, kind: str, n: int) -> None:
        names = self.class_names
        if isinstance(names, str) or not all(isinstance(c, str) for c in names):  # type: ignore[union-attr]
            raise ValueError(f"task {self.name!r}: class_names must be a list of strings, got {names!r}")
        names = tuple(names)  # type: ignore[arg-type]
        if kind == "regression":
            raise ValueError(f"task {self.name!r}: a regression head has no class names")
        if len(names) != n or len(set(names)) != n:
            raise ValueError(f"task {self.name!r}: class_names must be {n} distinct names (one per output), "
                             f"got {len(names)}: {list(names)[:5]}")
        object.__setattr__(self, "class_names", names)  # a tuple: the spec stays hashable

    @property
    def missing_value(self) -> float:
        """How a missing label is encoded: -1 for class indices, NaN for float targets."""
        return -1 if self.kind == "classification" else math.nan

    @property
    def metric(self) -> str:
        """The evaluation metric of this head's kind (`TASK_METRICS`)."""
        return TASK_METRICS[self.kind][0]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML-safe) for checkpoints, cards and `parse_tasks` round trips."""
        d = asdict(self)
        d["class_names"] = None if self.class_names is None else list(self.class_names)
        return d


def _default_source(name: str) -> str:
    return name if name in BUILTIN_SOURCES and name != "label" else "label"


def _parse_source(text: str, where: str) -> tuple[str, int]:
    source, _, seed = text.partition("@")
    if not source:
        raise ValueError(f"{where}: empty label source")
    if not seed:
        return source, 0
    if source != "random":
        raise ValueError(f"{where}: only the 'random' source takes a seed ('random@SEED'), got {text!r}")
    try:
        return source, int(seed)
    except ValueError:
        raise ValueError(f"{where}: seed in {text!r} must be an integer") from None


def parse_task_string(spec: str) -> list[TaskSpec]:
    """Parse the `--tasks` grammar of the module docstring into validated specs."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("empty task spec; expected e.g. 'fine:classification:10,coarse:classification:4:0.5'")
    out = []
    for i, item in enumerate(spec.split(",")):
        item = item.strip()
        where = f"task #{i + 1} {item!r}"
        parts = [p.strip() for p in item.split(":")]
        if not 3 <= len(parts) <= 5:
            raise ValueError(f"{where}: expected NAME:KIND:OUTPUTS[:WEIGHT[:SOURCE]], got {len(parts)} field(s)")
        name, kind, outputs = parts[:3]
        try:
            num_outputs = int(outputs)
        except ValueError:
            raise ValueError(f"{where}: OUTPUTS must be an integer, got {outputs!r}") from None
        try:
            weight = float(parts[3]) if len(parts) > 3 and parts[3] else 1.0
        except ValueError:
            raise ValueError(f"{where}: WEIGHT must be a number, got {parts[3]!r}") from None
        source, seed = _parse_source(parts[4], where) if len(parts) > 4 else (_default_source(name), 0)
        out.append(TaskSpec(name, kind, num_outputs, weight, source, seed))
    return check_unique(out)


def _from_mapping(d: Mapping[str, Any], name: str | None = None) -> TaskSpec:
    fields = dict(d)
    if name is not None:
        if "name" in fields and fields["name"] != name:
            raise ValueError(f"task {name!r}: conflicting name field {fields['name']!r}")
        fields["name"] = name
    unknown = sorted(set(fields) - set(_FIELDS))
    if unknown:
        raise ValueError(f"task {fields.get('name')!r}: unknown field(s) {unknown}; allowed: {', '.join(_FIELDS)}")
    if "name" not in fields or "num_outputs" not in fields:
        raise ValueError(f"task {fields.get('name')!r}: 'name' and 'num_outputs' are required")
    fields.setdefault("source", _default_source(str(fields["name"])))
    return TaskSpec(**fields)


def parse_tasks(obj: str | Sequence[Any] | Mapping[str, Any]) -> list[TaskSpec]:
    """Accept every form a task list arrives in and return validated, uniquely named specs.

    - a CLI string (module grammar);
    - a list of dicts or `TaskSpec`s (the YAML list form: ``tasks: [{name: fine, ...}, ...]``);
    - a mapping name -> fields (``tasks: {fine: {kind: classification, num_outputs: 10}}``);
    - a mapping with a top-level ``tasks`` key (a whole YAML config section).
    """
    if isinstance(obj, str):
        return parse_task_string(obj)
    if isinstance(obj, Mapping):
        if "tasks" in obj and len(obj) == 1:
            return parse_tasks(obj["tasks"])
        specs = []
        for name, fields in obj.items():
            if not isinstance(fields, Mapping):
                raise ValueError(f"task {name!r}: expected a mapping of fields, got {type(fields).__name__}")
            specs.append(_from_mapping(fields, str(name)))
        return check_unique(specs)
    if isinstance(obj, Sequence):
        specs = []
        for item in obj:
            if isinstance(item, TaskSpec):
                specs.append(item)
            elif isinstance(item, Mapping):
                specs.append(_from_mapping(item))
            else:
                raise ValueError(f"a task must be a mapping or TaskSpec, got {type(item).__name__}: {item!r}")
        return check_unique(specs)
    raise ValueError(f"cannot read tasks from {type(obj).__name__}")


def load_tasks_yaml(path: str | os.PathLike) -> list[TaskSpec]:
    """Read a YAML file holding a task list (any form `parse_tasks` accepts)."""
    with open(path, encoding="utf-8") as f:
        return parse_tasks(yaml.safe_load(f))


def check_unique(specs: Sequence[TaskSpec]) -> list[TaskSpec]:
    """Reject empty lists and duplicate names (two heads cannot share a ModuleDict key)."""
    if not specs:
        raise ValueError("at least one task is required")
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise ValueError(f"duplicate task name {s.name!r}")
        seen.add(s.name)
    return list(specs)


def validate_tasks(
    specs: Sequence[TaskSpec], num_classes: int | None = None, extra_sources: Iterable[str] = ()
) -> None:
    """Check the specs against the data before anything is built.

    `num_classes` is the dataset's own class count (a `label` classification head must match
    it); `extra_sources` names the additional label arrays the data provides. A task whose
    source is neither built in nor provided has no labels at all -- an error, not a silent
    zero-loss head.
    """
    extra = set(extra_sources)
    for s in check_unique(specs):
        if s.source == "label":
            if num_classes is not None and s.kind == "classification" and s.num_outputs != num_classes:
                raise ValueError(f"task {s.name!r}: head has {s.num_outputs} outputs but the data has "
                                 f"{num_classes} classes")
        elif s.source not in BUILTIN_SOURCES and s.source not in extra:
            have = sorted(set(BUILTIN_SOURCES) | extra)
            raise ValueError(f"task {s.name!r}: labels {s.source!r} are missing from the data (available: {have})")


def main_task(specs: Sequence[TaskSpec]) -> TaskSpec:
    """The first task is the main one by convention (see module docstring)."""
    return check_unique(specs)[0]

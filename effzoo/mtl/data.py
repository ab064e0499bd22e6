"""Datasets that yield (image, {task: label}) and mix several task datasets into one stream.

Every sample carries a label slot for *every* task (missing ones hold -1 / NaN), so torch's
default collate stacks them and a mini-batch can mix samples labelled for different tasks;
the masked losses then use, per task, only the samples that have its label.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch.utils.data import ConcatDataset, Dataset, WeightedRandomSampler

from ..tasks import TaskSpec


def missing_label(spec: TaskSpec) -> torch.Tensor:
    """The placeholder stored for a sample that has no label for `spec`."""
    if spec.kind == "classification":
        return torch.tensor(-1, dtype=torch.long)
    shape = () if spec.kind == "regression" and spec.num_outputs == 1 else (spec.num_outputs,)
    return torch.full(shape, math.nan)


class MultiTaskDataset(Dataset):
    """Attach per-task label arrays to an image dataset.

    `base[i]` may return an image or an (image, label, ...) tuple; only the image is kept.
    Tasks absent from `labels` (e.g. labelled in another part of a mix) get the missing code.
    Rotation labels are made per batch (`labels.rotate_batch`), so they need no array here.
    """

    def __init__(self, base: Dataset, specs: Sequence[TaskSpec], labels: Mapping[str, torch.Tensor]) -> None:
        self.base = base
        self.specs = list(specs)
        names = {s.name for s in self.specs}
        unknown = sorted(set(labels) - names)
        if unknown:
            raise ValueError(f"labels given for unknown task(s) {unknown}; tasks: {sorted(names)}")
        n = len(base)  # type: ignore[arg-type]
        for name, y in labels.items():
            if len(y) != n:
                raise ValueError(f"task {name!r}: {len(y)} labels for {n} samples")
        self.labels = {k: torch.as_tensor(v) for k, v in labels.items()}

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Any, dict[str, torch.Tensor]]:
        item = self.base[i]
        x = item[0] if isinstance(item, (tuple, list)) else item
        y = {s.name: (self.labels[s.name][i] if s.name in self.labels else missing_label(s)) for s in self.specs}
        return x, y


def mix_datasets(
    parts: Sequence[MultiTaskDataset], proportions: Sequence[float] | None = None, num_samples: int | None = None,
    seed: int = 0,
) -> tuple[ConcatDataset, WeightedRandomSampler | None]:
    """Concatenate task datasets; optionally draw from them in given `proportions`.

    Without proportions a shuffled loader over the concatenation mixes parts by size. With
    them, the returned sampler draws part p with probability proportions[p] (uniformly inside
    it) -- useful when a small labelled set would otherwise be drowned by a large one.
    """
    if not parts:
        raise ValueError("need at least one dataset to mix")
    names = [tuple(s.name for s in p.specs) for p in parts]
    if any(n != names[0] for n in names):
        raise ValueError(f"all parts must share one task list, got {names}")
    concat = ConcatDataset(parts)
    if proportions is None:
        return concat, None
    if len(proportions) != len(parts) or any(p < 0 for p in proportions) or sum(proportions) <= 0:
        raise ValueError(f"need one non-negative proportion per part (not all zero), got {list(proportions)}")
    weights = torch.cat([torch.full((len(p),), q / max(len(p), 1)) for p, q in zip(parts, proportions)])
    g = torch.Generator().manual_seed(seed)
    sampler = WeightedRandomSampler(weights, num_samples or len(concat), replacement=True, generator=g)
    return concat, sampler

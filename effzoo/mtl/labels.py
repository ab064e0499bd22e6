"""Built-in auxiliary labels: Fashion-MNIST garment groups, rotation prediction, random labels.

Each maker keeps the missing-label code (-1) intact, so a partially labelled dataset stays
partially labelled after deriving auxiliary labels from it.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ..tasks import TaskSpec

#: Fashion-MNIST fine class -> coarse group. Groups: 0 tops {T-shirt, Pullover, Coat, Shirt},
#: 1 bottoms + one-piece {Trouser, Dress}, 2 footwear {Sandal, Sneaker, Ankle boot}, 3 bag {Bag}.
#: A dress is not a "bottom"; it is grouped with trousers as the non-top garment (mtl.md §5),
#: a stated design choice. Group priors are 40/20/30/10 %.
FASHION_MNIST_COARSE = (0, 1, 0, 1, 0, 2, 0, 2, 3, 2)
FASHION_MNIST_COARSE_NAMES = ("tops", "bottoms+dresses", "footwear", "bags")
ROTATION_DEGREES = (0, 90, 180, 270)


def coarse_labels(fine: torch.Tensor, mapping: Sequence[int] = FASHION_MNIST_COARSE) -> torch.Tensor:
    """Map fine class indices to coarse groups; -1 (missing) stays -1, out-of-range is an error."""
    fine = torch.as_tensor(fine).long()
    table = torch.as_tensor(list(mapping), dtype=torch.long)
    missing = fine < 0
    if bool((fine >= len(table)).any()):
        raise ValueError(f"fine label {int(fine.max())} has no coarse group (mapping covers {len(table)} classes)")
    return torch.where(missing, torch.full_like(fine, -1), table[fine.clamp(min=0)])


def random_labels(num_samples: int, num_classes: int, seed: int) -> torch.Tensor:
    """A fixed random class per sample index (same seed -> same labels on every run and rank).

    The labels carry no information about the image, so a head trained on them can only
    memorize: the controlled negative-transfer probe.
    """
    if num_samples < 0 or num_classes < 2:
        raise ValueError(f"need num_samples >= 0 and num_classes >= 2, got {num_samples}, {num_classes}")
    g = torch.Generator().manual_seed(seed)
    return torch.randint(num_classes, (num_samples,), generator=g)


def keep_labels(labels: torch.Tensor, num_keep: int, seed: int = 0) -> torch.Tensor:
    """Mark all but `num_keep` seeded random samples as missing (-1 for class indices, NaN else).

    This is how "main task with only 1,000 labels" is set up while an auxiliary task keeps all.
    """
    labels = torch.as_tensor(labels).clone()
    if not 0 <= num_keep <= len(labels):
        raise ValueError(f"num_keep must be in [0, {len(labels)}], got {num_keep}")
    g = torch.Generator().manual_seed(seed)
    drop = torch.randperm(len(labels), generator=g)[num_keep:]
    labels[drop] = -1 if not labels.is_floating_point() else float("nan")
    return labels


def make_task_labels(
    specs: Sequence[TaskSpec],
    targets: torch.Tensor,
    extra: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Per-sample label arrays for every task whose labels exist before augmentation.

    `targets` are the dataset's own labels (source `label`); `extra` holds any other named
    label arrays. Rotation labels depend on the augmented image, so they are made per batch
    (`rotate_batch` / `RotationTransform`) and are absent here.
    """
    targets = torch.as_tensor(targets)
    extra = dict(extra or {})
    out: dict[str, torch.Tensor] = {}
    for s in specs:
        if s.source == "label":
            out[s.name] = targets
        elif s.source == "coarse":
            out[s.name] = coarse_labels(targets)
        elif s.source == "random":
            out[s.name] = random_labels(len(targets), s.num_outputs, s.seed)
        elif s.source == "rotation":
            continue
        elif s.source in extra:
            labels = torch.as_tensor(extra[s.source])
            if len(labels) != len(targets):
                raise ValueError(f"task {s.name!r}: {len(labels)} labels for {len(targets)} samples")
            out[s.name] = labels
        else:
            raise ValueError(f"task {s.name!r}: labels {s.source!r} are missing from the data")
    return out


class RotationTransform:
    """Rotate one CHW image by a random multiple of 90 degrees; return (image, rotation label).

    For per-sample pipelines. Square inputs keep their shape; the label is k for k*90 degrees
    counter-clockwise. Seeded for reproducibility (each data-loader worker should reseed).
    """

    def __init__(self, seed: int | None = None) -> None:
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(seed)

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, int]:
        k = int(torch.randint(4, (1,), generator=self.generator))
        return torch.rot90(image, k, dims=(-2, -1)), k


def rotate_batch(
    x: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    task: str = "rotation",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Append a rotated copy of each image (k in {1,2,3}) labelled for the rotation task only.

    Why copies rather than rotating in place: the main task learns upright images, so a rotated
    image must not be scored against its class label (its other labels are marked missing);
    the originals keep their labels and get rotation label 0. The batch doubles.
    """
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotation prediction needs a batch of square images (N, C, H, H), got {tuple(x.shape)}")
    n = x.shape[0]
    k = torch.randint(1, 4, (n,), generator=generator).to(x.device)
    rotated = torch.empty_like(x)
    for r in (1, 2, 3):
        idx = (k == r).nonzero(as_tuple=True)[0]
        if len(idx):
            rotated[idx] = torch.rot90(x[idx], r, dims=(-2, -1))
    out: dict[str, torch.Tensor] = {}
    for name, y in targets.items():
        if name == task:
            continue
        fill = torch.full_like(y, -1) if not y.is_floating_point() else torch.full_like(y, float("nan"))
        out[name] = torch.cat([y, fill])
    out[task] = torch.cat([torch.zeros(n, dtype=torch.long, device=x.device), k])
    return torch.cat([x, rotated]), out

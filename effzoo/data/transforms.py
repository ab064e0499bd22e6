"""Train and eval preprocessing (torchvision transforms v1 on PIL images).

``eval_transform`` is *the* evaluation preprocessing: validation, test, resolution sweeps and
FixRes fine-tuning all go through it, so accuracy numbers at a given (size, crop_pct) are
comparable everywhere (FixRes issue #4: fine-tune with the preprocessing you evaluate with).
"""

from __future__ import annotations

import numbers
from typing import Sequence

from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERPOLATIONS = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "lanczos": InterpolationMode.LANCZOS,
    "box": InterpolationMode.BOX,
    "hamming": InterpolationMode.HAMMING,
}


def resolve_interpolation(name: str) -> InterpolationMode:
    """Map ``"bicubic"`` etc. to torchvision's enum, with a readable error for typos."""
    key = str(name).lower()
    if key not in _INTERPOLATIONS:
        raise ValueError(
            f"unknown interpolation {name!r}; choose one of {sorted(_INTERPOLATIONS)}"
        )
    return _INTERPOLATIONS[key]


def eval_resize_size(image_size: int, crop_pct: float) -> int:
    """Short-side resize before the center crop: ``floor(image_size / crop_pct)``.

    The small epsilon keeps float noise from turning an exact ratio such as 28 / 0.875 = 32
    into 31.
    """
    _check_crop_pct(crop_pct)
    return int(image_size / crop_pct + 1e-6)


def _check_crop_pct(crop_pct: float) -> None:
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")


def _check_stats(mean: Sequence[float], std: Sequence[float], in_chans: int | None) -> None:
    if len(mean) != len(std):
        raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} differ in length")
    if in_chans is not None and len(mean) != in_chans:
        raise ValueError(f"mean/std have {len(mean)} values but in_chans={in_chans}")
    if any(s <= 0 for s in std):
        raise ValueError(f"std values must be positive, got {tuple(std)}")


def _check_size(image_size: int) -> None:
    integral = isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool)
    if not integral or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")


def rand_augment_fill(mean: Sequence[float]) -> int | tuple[int, ...]:
    """Fill colour for RandAugment's geometric ops, in 0..255.

    PIL's ``Image.transform`` on an 'L' image rejects a 3-tuple ("color must be int or
    single-element tuple"), and timm's default fill is (128, 128, 128), so grayscale data needs
    a plain int.
    """
    fill = tuple(int(round(255 * m)) for m in mean)
    return fill[0] if len(fill) == 1 else fill


def build_rand_augment(config_str: str, image_size: int, mean: Sequence[float]):
    """Build timm's RandAugment for ``config_str`` (e.g. ``"rand-m9-mstd0.5"``).

    Raises ValueError for a malformed config string instead of timm's bare assertion.
    """
    # Imported lazily: timm pulls in a lot and most callers of this module never need it.
    from timm.data import rand_augment_transform

    hparams = {
        # timm's train transform uses 45 % of the image side as the translate limit.
        "translate_const": int(image_size * 0.45),
        "img_mean": rand_augment_fill(mean),
    }
    try:
        return rand_augment_transform(config_str, hparams)
    except (AssertionError, ValueError, KeyError, IndexError) as err:
        raise ValueError(
            f"invalid rand_augment config {config_str!r} ({err or type(err).__name__}); "
            "expected something like 'rand-m9-mstd0.5' or 'rand-m7-n2', or None to disable"
        ) from None


def train_transform(
    image_size: int,
    in_chans: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bicubic",
    rand_augment: str | None = "rand-m9-mstd0.5",
    random_erasing: float = 0.0,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    hflip: bool = True,
) -> T.Compose:
    """RandomResizedCrop (+ flip) + RandAugment + ToTensor + Normalize (+ RandomErasing).

    ``scale`` is the RandomResizedCrop area range; datasets choose it (see the sources). ``hflip``
    must be False where mirroring changes the label (digits). Input: a PIL image already in the
    dataset's mode ('L' when ``in_chans == 1``, else 'RGB').
    """
    _check_size(image_size)
    _check_stats(mean, std, in_chans)
    lo, hi = scale
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
    if not 0.0 <= random_erasing <= 1.0:
        raise ValueError(f"random_erasing is a probability in [0, 1], got {random_erasing}")

    image_size = int(image_size)
    ops: list = [
        T.RandomResizedCrop(
            image_size, scale=(lo, hi), interpolation=resolve_interpolation(interpolation)
        )
    ]
    if hflip:
        ops.append(T.RandomHorizontalFlip())
    if rand_augment:
        ops.append(build_rand_augment(rand_augment, image_size, mean))
    ops += [T.ToTensor(), T.Normalize(mean=tuple(mean), std=tuple(std))]
    if random_erasing > 0:
        from timm.data.random_erasing import RandomErasing  # deferred: timm is slow to import (see above)

        # 'pixel' mode fills with per-pixel normal noise, which matches normalized statistics;
        # device='cpu' because this runs inside DataLoader workers.
        ops.append(RandomErasing(random_erasing, mode="pixel", device="cpu"))
    return T.Compose(ops)


def eval_transform(
    image_size: int,
    crop_pct: float,
    interpolation: str,
    mean: Sequence[float],
    std: Sequence[float],
) -> T.Compose:
    """Resize(floor(image_size / crop_pct)) + CenterCrop(image_size) + ToTensor + Normalize."""
    _check_size(image_size)
    _check_stats(mean, std, None)
    image_size = int(image_size)
    return T.Compose(
        [
            T.Resize(
                eval_resize_size(image_size, crop_pct),
                interpolation=resolve_interpolation(interpolation),
            ),
            T.CenterCrop(image_size),
            T.ToTensor(),
            T.Normalize(mean=tuple(mean), std=tuple(std)),
        ]
    )

"""A seeded, learnable toy dataset for tests: one oriented grating per class, plus noise.

Gratings survive random crops and translations (the phase is random per sample), so a small
CNN learns them in a few steps even under RandomResizedCrop; orientation carries the class,
so horizontal flips are disabled (a flip maps angle t to pi - t, another class).
"""

from __future__ import annotations

import numpy as np

from .datasets import ArrayImageDataset
from .source import DataSource, Splits


def make_synthetic(
    num_samples: int, num_classes: int, in_chans: int, size: int, seed: int, split_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W) or (N, H, W, 3) and balanced labels.

    ``seed`` fixes the class patterns (shared by all splits); ``split_seed`` the per-sample noise.
    """
    patterns = np.random.default_rng(seed)
    angles = np.pi * np.arange(num_classes) / num_classes
    freqs = patterns.uniform(1.5, 3.0, size=num_classes)  # cycles per image side
    colours = patterns.uniform(0.3, 1.0, size=(num_classes, in_chans))

    rng = np.random.default_rng([seed, split_seed])
    labels = rng.permutation(np.arange(num_samples) % num_classes)
    yy, xx = np.mgrid[0:size, 0:size] / size
    theta = angles[labels][:, None, None]
    phase = rng.uniform(0, 2 * np.pi, size=(num_samples, 1, 1))
    wave = np.sin(
        2 * np.pi * freqs[labels][:, None, None] * (xx * np.cos(theta) + yy * np.sin(theta))
        + phase
    )
    images = 0.5 + 0.35 * wave[..., None] * colours[labels][:, None, None, :]
    images = images + rng.normal(0.0, 0.12, size=images.shape)
    images = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)
    if in_chans == 1:
        images = images[..., 0]
    return images, labels.astype(np.int64)


# Noise seed of the sample used to measure mean/std; distinct from the 0/1/2 of the splits.
_STATS_SPLIT_SEED = 1000


class SyntheticSource(DataSource):
    in_memory = True

    def __init__(
        self,
        *,
        num_classes: int = 4,
        in_chans: int = 1,
        size: int = 16,
        num_samples: int = 256,
        seed: int = 0,
        val_fraction: float | None = None,
    ):
        if in_chans not in (1, 3):
            raise ValueError(f"synthetic in_chans must be 1 or 3, got {in_chans}")
        if num_classes < 2:
            raise ValueError(f"synthetic num_classes must be >= 2, got {num_classes}")
        if size < 4 or num_samples < num_classes:
            raise ValueError(
                f"synthetic needs size >= 4 and num_samples >= num_classes, "
                f"got size={size}, num_samples={num_samples}"
            )
        self.name = "synthetic"
        self.num_classes = num_classes
        self.class_names = [f"class_{i}" for i in range(num_classes)]
        self.in_chans = in_chans
        self.base_resolution = size
        self.hflip = False
        self.rrc_scale = (0.35, 1.0)
        self.size, self.num_samples, self.seed = size, num_samples, seed
        fraction = 0.25 if val_fraction is None else val_fraction
        self.eval_samples = max(num_classes, int(round(num_samples * fraction)))
        # Analytic stats of the generator are awkward (clipping); measure a small sample instead.
        probe, _ = make_synthetic(256, num_classes, in_chans, size, seed, _STATS_SPLIT_SEED)
        probe = probe.reshape(len(probe), -1, in_chans) / 255.0
        self.mean = tuple(round(float(v), 4) for v in probe.mean(axis=(0, 1)))
        self.std = tuple(round(float(v), 4) for v in probe.std(axis=(0, 1)))

    def load(self) -> Splits:
        def split(n: int, split_seed: int) -> ArrayImageDataset:
            args = (self.num_classes, self.in_chans, self.size, self.seed, split_seed)
            return ArrayImageDataset(*make_synthetic(n, *args))

        return Splits(
            train=split(self.num_samples, 0),
            val=split(self.eval_samples, 1),
            test=split(self.eval_samples, 2),
        )

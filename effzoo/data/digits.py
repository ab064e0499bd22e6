"""scikit-learn's bundled 8x8 handwritten digits: the default, offline dataset."""

from __future__ import annotations

import numpy as np

from .datasets import ArrayImageDataset
from .source import DataSource, Splits
from .splits import stratified_split

# Provisional: the lead sets the final value after measuring accuracy vs. cost.
DIGITS_BASE_RESOLUTION = 32
# Mean/std of the non-test pool (pixels scaled to 0..1); fixed constants rather than
# recomputed per seed so that a model's normalization does not depend on the split seed.
DIGITS_MEAN = (0.3055,)
DIGITS_STD = (0.3760,)
# The test split is drawn with a fixed seed, independent of the training seed, so that runs
# with different seeds are scored on the same held-out images.
DIGITS_TEST_FRACTION = 0.15
DIGITS_TEST_SEED = 0
# 0.15 of the whole set, expressed as a fraction of the non-test pool: 70/15/15 overall.
DIGITS_VAL_FRACTION = 0.15 / 0.85


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 images as uint8 (N, 8, 8) in 0..255, and int64 labels."""
    from sklearn.datasets import load_digits  # deferred: scikit-learn takes ~1 s to import, only digits needs it

    bunch = load_digits()
    # The raw values are counts 0..16 of set pixels in 4x4 blocks.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return images, bunch.target.astype(np.int64)


class DigitsSource(DataSource):
    in_memory = True

    def __init__(self, *, seed: int = 0, val_fraction: float | None = None):
        self.name = "digits"
        self.num_classes = 10
        self.class_names = [str(i) for i in range(10)]
        self.in_chans = 1
        self.base_resolution = DIGITS_BASE_RESOLUTION
        self.mean, self.std = DIGITS_MEAN, DIGITS_STD
        # Mirroring changes a digit's identity (2/5, 3/E-like shapes), so no flips.
        self.hflip = False
        # The source is only 8x8: an 8 %-area crop would be a 2x2-pixel patch with no digit left
        # in it. At 0.5 the smallest crop still keeps ~6x6 source pixels, most of the stroke.
        self.rrc_scale = (0.5, 1.0)
        self.seed = seed
        self.val_fraction = DIGITS_VAL_FRACTION if val_fraction is None else val_fraction

    def load(self) -> Splits:
        images, labels = load_digits_arrays()
        pool, test = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_TEST_SEED)
        train, val = stratified_split(labels[pool], self.val_fraction, self.seed)
        everything = ArrayImageDataset(images, labels)
        return Splits(
            train=everything.subset(pool[train]),
            val=everything.subset(pool[val]),
            test=everything.subset(test),
        )

"""Streaming a split's shards: sequential reads, split across DDP ranks and loader workers, whole batches out.

Each epoch (`set_epoch`, from the trainer's epoch: resume lands on the same order):
  1. the shards are put in an order drawn from (seed, epoch), and their samples, in that order, form one
     stream of N samples;
  2. rank r of W takes the contiguous slice [r*L, (r+1)*L) of it, L = N // W, so every rank has the same
     number of batches and DDP never waits at an epoch's end for a rank that ran out (the N mod W samples
     left over differ every epoch; with N divisible by W each sample is seen exactly once per epoch);
  3. the rank's batches are cut into one contiguous block per loader worker; a worker reads only its block,
     shard segment by shard segment (a shard's tar is read from its start, skipping the samples before the
     segment), through a shuffle buffer drawn from (seed, epoch, rank, worker), and yields whole batches.
Shuffling is thus by shard and by buffer, as WebDataset's readers do, while the split across ranks and workers
is by sample, so uneven shard counts cost nothing. A shard that ends before its recorded count is named.
Remote locations (`https://`, `s3://`, ...) are opened by webdataset's `gopen` (effzoo.data.locations).
"""

from __future__ import annotations

import io
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image
from torch.utils.data import IterableDataset, default_collate, get_worker_info

from .images import READ_ERRORS, load_image, to_model_mode
from .locations import open_location
from .tars import TarError, iter_members

IMAGE_MEMBERS = ("png", "jpg", "jpeg", "webp", "bmp", "npy")


def read_samples(location: str, start: int, stop: int, expected: int) -> Iterator[tuple[str, bytes, int]]:
    """(image extension, image bytes, label) of samples start..stop-1 of one shard, read sequentially (the
    samples before `start` are skipped over, not read, where the file can seek)."""
    try:
        yield from _read_tar(location, start, stop)
    except (TarError, OSError, ValueError) as e:
        raise ValueError(f"shard {location} cannot be read ({e}): it is missing, truncated or damaged; copy it "
                         "again or write the shards again") from None
    except _EndedEarly as e:
        if e.samples < min(stop, expected):
            raise ValueError(f"shard {location} ended after {e.samples} samples, its metadata says {expected}: it is "
                             "truncated; copy it again or write the shards again") from None


class _EndedEarly(Exception):
    def __init__(self, samples: int) -> None:
        self.samples = samples


def _read_tar(location: str, start: int, stop: int) -> Iterator[tuple[str, bytes, int]]:
    n, key, image, label = 0, None, None, None  # n: samples (keys) complete before the current one

    def wanted(name: str) -> bool:  # the data of the samples before the segment is skipped, never read
        return n + (key is not None and name.rpartition(".")[0] != key) >= start

    with open_location(location) as f:
        for member in iter_members(f, wanted):
            name, _, ext = member.name.rpartition(".")
            if name != key:
                n += key is not None
                if n >= stop:
                    return
                key, image, label = name, None, None
            if n < start:
                continue
            if ext == "cls":
                label = int(member.data)
            elif ext in IMAGE_MEMBERS:
                image = (ext, member.data)
            if image is not None and label is not None:
                yield image[0], image[1], label
                image = label = None
    raise _EndedEarly(n + (key is not None))


def decode(ext: str, data: bytes, in_chans: int, where: str) -> Image.Image:
    try:
        if ext == "npy":
            return to_model_mode(Image.fromarray(load_npy(data)), in_chans, copy=False)
        return load_image(io.BytesIO(data), in_chans)
    except READ_ERRORS as e:
        raise ValueError(f"shard {where}: a sample cannot be decoded ({e}); write the shards again") from None


_NPY_HEADERS: dict[bytes, tuple[tuple[int, ...], np.dtype]] = {}  # header bytes -> (shape, dtype), per process


def load_npy(data: bytes) -> np.ndarray:
    """An array in numpy's .npy format, without pickle. `np.load` parses the header's text every time (~30 us,
    more than decoding a 28 px PNG); samples of one dataset share their header, so it is parsed once (by
    `np.load`) and later arrays are views of their bytes at that header's shape and dtype."""
    if data[:8] == b"\x93NUMPY\x01\x00":  # format 1.0: a 2-byte header length
        end = 10 + int.from_bytes(data[8:10], "little")
        known = _NPY_HEADERS.get(data[:end])
        if known is not None and len(data) - end == int(np.prod(known[0])) * known[1].itemsize:
            return np.frombuffer(data, dtype=known[1], offset=end).reshape(known[0])
    array = np.load(io.BytesIO(data), allow_pickle=False)
    if data[:8] == b"\x93NUMPY\x01\x00" and array.flags.c_contiguous and len(_NPY_HEADERS) < 64:
        _NPY_HEADERS[data[:10 + int.from_bytes(data[8:10], "little")]] = (array.shape, array.dtype)
    return array


class ShardStream(IterableDataset):
    """One split's shards as a stream of whole batches (see the module docstring for the order)."""

    def __init__(self, locations: list[str], counts: list[int], *, in_chans: int, batch_size: int,
                 transform: Callable | None = None, shuffle: bool = True, seed: int = 0, buffer: int = 1000,
                 drop_last: bool = True) -> None:
        self.locations, self.counts = list(locations), [int(c) for c in counts]
        self.in_chans, self.batch_size, self.transform = in_chans, batch_size, transform
        self.shuffle, self.seed, self.buffer, self.drop_last = shuffle, seed, buffer, drop_last
        self.epoch, self.rank, self.world = 0, 0, 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_distributed(self, rank: int, world: int) -> None:
        self.rank, self.world = int(rank), int(world)

    @property
    def samples_per_rank(self) -> int:
        return sum(self.counts) // self.world

    def __len__(self) -> int:
        """Batches per rank and epoch (what the progress bar and the schedule count)."""
        per_rank = self.samples_per_rank
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def shard_order(self) -> list[int]:
        order = np.arange(len(self.locations))
        if self.shuffle:
            np.random.default_rng([self.seed, self.epoch]).shuffle(order)
        return order.tolist()

    def segments(self, first: int, stop: int) -> list[tuple[int, int, int]]:
        """(shard, start, stop) pieces of the epoch's stream positions [first, stop)."""
        pieces, position = [], 0
        for shard in self.shard_order():
            count = self.counts[shard]
            lo, hi = max(first, position), min(stop, position + count)
            if lo < hi:
                pieces.append((shard, lo - position, hi - position))
            position += count
        return pieces

    def worker_span(self, worker: int, workers: int) -> tuple[int, int]:
        """Stream positions of a worker's block of whole batches (the last block takes a final short batch)."""
        batches, per_rank, start = len(self), self.samples_per_rank, self.rank * self.samples_per_rank
        lo, hi = batches * worker // workers, batches * (worker + 1) // workers
        end = min(per_rank, hi * self.batch_size) if (worker == workers - 1 and not self.drop_last) else hi * self.batch_size
        return start + lo * self.batch_size, start + end

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        first, stop = self.worker_span(worker, workers)
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker])
        batch: list[Any] = []
        for sample in self._buffered(self._samples(first, stop), rng):
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield default_collate(batch)
                batch = []
        if batch:  # only when not drop_last: worker_span gave this worker the rank's short last batch
            yield default_collate(batch)

    def _samples(self, first: int, stop: int) -> Iterator[tuple[str, bytes, int, str]]:
        for shard, lo, hi in self.segments(first, stop):
            for ext, data, label in read_samples(self.locations[shard], lo, hi, self.counts[shard]):
                yield ext, data, label, self.locations[shard]

    def _buffered(self, samples: Iterator[tuple[str, bytes, int, str]], rng: np.random.Generator) -> Iterator[Any]:
        """Decoded, transformed samples; with shuffling, drawn at random from a buffer of `buffer` encoded ones."""
        pool: list[tuple[str, bytes, int, str]] = []
        for sample in samples:
            if not self.shuffle:
                yield self._prepare(sample)
                continue
            pool.append(sample)
            if len(pool) >= self.buffer:
                yield self._prepare(pool.pop(int(rng.integers(len(pool)))))
        rng.shuffle(pool)
        for sample in pool:
            yield self._prepare(sample)

    def _prepare(self, sample: tuple[str, bytes, int, str]) -> tuple[Any, int]:
        ext, data, label, where = sample
        image = decode(ext, data, self.in_chans, where)
        return (self.transform(image) if self.transform is not None else image), label

"""Sharded datasets in the WebDataset layout: `effzoo shard` writes them, every command that takes `--data`
reads them.

A shard folder holds tar files per split, `train-000000.tar`, `train-000001.tar`, ... In each, a sample is
two members with the same key: the image (`<key>.png`, `.jpg`, ... : a folder's original file bytes, or PNG
for in-memory data; `<key>.npy` with `--encode raw`: uint8 pixels in numpy's format, read without pickle)
and `<key>.cls`, the class index as text. That is WebDataset's convention, so timm, OpenCLIP and
`webdataset` read these shards as they are. Beside them, `effzoo-shards.json` records what they hold:
class names, channels, base resolution, normalization, per-split sample counts, and each shard's count
and byte size, so a truncated or foreign shard is named before training starts.

An image folder's labels.csv columns (multi-task labels) go beside the tars as `<split>-labels.csv`, one
row per sample key (effzoo.data.shard_labels).

Writes are atomic per shard (temp file, fsync, rename) and the metadata comes last: a killed `effzoo
shard` leaves no folder that reads as complete, and running it again keeps the shards it finished
(recorded in `.effzoo-shards.partial.json`, with the settings they were written with).

Training streams the train split (`ShardSource.train_stream`, effzoo.data.shard_stream): sequential reads,
shuffled by shard and buffer, split across ranks and workers by sample. Evaluation, a `--train-limit`
subset and multi-task labels read by random access instead: the tar headers give each member's offset (one
pass over the headers, no image decoded), so a split is also a map-style dataset like any other. A shard
folder given as a URL (effzoo.data.locations) streams its train split from there, and its evaluation splits
are fetched into the local cache first.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

from ..artifacts.atomic import atomic_write
from ..wording import setting
from .datasets import ArrayImageDataset, ImageFileDataset, LabelledImages
from .locations import fetch, is_remote, join, read_text
from .shard_labels import read_split_labels, sample_key, sample_path, write_split_labels
from .shard_stream import IMAGE_MEMBERS, ShardStream, decode
from .tars import TarError, iter_members
from .source import DataSource, Splits

SHARD_META = "effzoo-shards.json"
PARTIAL = ".effzoo-shards.partial.json"
FORMAT = "effzoo-shards/1"
ENCODINGS = ("keep", "png", "raw")  # keep: a folder's file bytes as they are (PNG for in-memory data)
SPLIT_NAMES = ("train", "val", "test")


def is_shard_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / SHARD_META).is_file()


# -- writing ------------------------------------------------------------------------------------------------
def encode_sample(dataset: LabelledImages, index: int, encode: str) -> tuple[str, bytes, int]:
    """(member extension, image bytes, label) of one sample, as `encode` asks."""
    label = int(dataset.labels[index])
    if isinstance(dataset, ImageFileDataset) and encode == "keep":
        path = Path(dataset.paths[index])
        return path.suffix.lower().lstrip("."), path.read_bytes(), label
    if isinstance(dataset, ArrayImageDataset):
        pixels = dataset.images[index]
    else:  # a file, decoded as training reads it (orientation, alpha, channels)
        pixels = np.asarray(dataset.load(index))
    buffer = io.BytesIO()
    if encode == "raw":
        np.save(buffer, np.ascontiguousarray(pixels, dtype=np.uint8), allow_pickle=False)
        return "npy", buffer.getvalue(), label
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "png", buffer.getvalue(), label


def write_shard(path: Path, dataset: LabelledImages, indices: range, encode: str) -> dict[str, Any]:
    """One tar of the samples at `indices`, written atomically; its metadata record."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                for i in indices:
                    ext, data, label = encode_sample(dataset, i, encode)
                    key = sample_key(i)
                    _add(tar, f"{key}.{ext}", data)
                    _add(tar, f"{key}.cls", str(label).encode())
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)
    return {"file": path.name, "count": len(indices), "bytes": path.stat().st_size}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o444, 0  # mtime 0: the same data gives the same bytes
    tar.addfile(info, io.BytesIO(data))


class ShardWriter:
    """Writes every split of `source` as shards into `output`: iterate it (one record per shard, written or kept
    from an interrupted run with the same settings: `len()` of them), then `finish()` writes the metadata."""

    def __init__(self, source: DataSource, output: str | os.PathLike, *, encode: str = "keep",
                 shard_samples: int = 5000) -> None:
        if encode not in ENCODINGS:
            raise ValueError(f"{setting('encode')} must be one of {', '.join(ENCODINGS)}, got {encode!r}")
        if isinstance(shard_samples, bool) or not isinstance(shard_samples, int) or shard_samples < 1:
            raise ValueError(f"{setting('shard_samples')} must be an integer >= 1, got {shard_samples!r}")
        self.source, self.output, self.encode = source, Path(output), encode
        if is_shard_folder(self.output):
            raise ValueError(f"{self.output} already holds shards ({SHARD_META}); remove it or choose another output")
        splits = source.load()
        self.splits = {s: getattr(splits, s) for s in SPLIT_NAMES if getattr(splits, s) is not None}
        self.jobs = [(split, n, range(first, min(first + shard_samples, len(ds))))
                     for split, ds in self.splits.items() for n, first in enumerate(range(0, len(ds), shard_samples))]
        self.settings = {"encode": encode, "shard_samples": shard_samples, "dataset": source.name,
                         "counts": {s: len(ds) for s, ds in self.splits.items()}}
        self.records: dict[str, list[dict[str, Any]]] = {s: [] for s in self.splits}

    def __len__(self) -> int:
        return len(self.jobs)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.output.mkdir(parents=True, exist_ok=True)
        finished = _read_partial(self.output, self.settings)
        for split, n, indices in self.jobs:
            name = f"{split}-{n:06d}.tar"
            kept = finished.get(name)
            if kept is None or not (self.output / name).is_file() or (self.output / name).stat().st_size != kept["bytes"]:
                kept = finished[name] = write_shard(self.output / name, self.splits[split], indices, self.encode)
                _write_json(self.output / PARTIAL, {"settings": self.settings, "shards": finished})
            self.records[split].append(kept)
            yield kept

    def finish(self) -> Path:
        """The metadata, written last (atomically): only now does the folder read as shards."""
        if sum(len(r) for r in self.records.values()) != len(self.jobs):
            raise RuntimeError("ShardWriter.finish() before every shard was written: iterate the writer first")
        src = self.source
        meta = {"format": FORMAT, "dataset": src.name, "class_names": [str(c) for c in src.class_names],
                "in_chans": src.in_chans, "base_resolution": src.base_resolution, "mean": list(src.mean),
                "std": list(src.std), "hflip": src.hflip, "rrc_scale": list(src.rrc_scale), "encode": self.encode,
                "splits": {s: {"count": len(self.splits[s]), "shards": r} for s, r in self.records.items()}}
        if src.label_tables:  # labels.csv columns, beside the tars (effzoo.data.shard_labels)
            meta["label_tables"] = {s: write_split_labels(self.output, s, src.label_tables[s], self.splits[s].paths)
                                    for s in self.splits}
        path = _write_json(self.output / SHARD_META, meta)
        (self.output / PARTIAL).unlink(missing_ok=True)
        return path


def write_shards(source: DataSource, output: str | os.PathLike, *, encode: str = "keep", shard_samples: int = 5000) -> Path:
    """Every split of `source` as shards in `output` (see `ShardWriter`); returns the metadata file."""
    writer = ShardWriter(source, output, encode=encode, shard_samples=shard_samples)
    for _ in writer:
        pass
    return writer.finish()


def _read_partial(output: Path, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Shards an interrupted run finished with these settings (none when the settings changed)."""
    try:
        partial = json.loads((output / PARTIAL).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return dict(partial.get("shards", {})) if partial.get("settings") == settings else {}


def _write_json(path: Path, value: Any) -> Path:
    text = json.dumps(value, indent=1) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


# -- reading ------------------------------------------------------------------------------------------------
def read_metadata(folder: str | os.PathLike) -> dict[str, Any]:
    """The folder's `effzoo-shards.json`, checked: the format, the fields every reader needs, every shard there
    with the size it was written with (sizes of remote shards are checked as they are fetched or streamed)."""
    path = join(folder, SHARD_META)
    try:
        meta = json.loads(read_text(path) if is_remote(folder) else Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); write the shards again with `effzoo shard`") from None
    except OSError as e:
        raise FileNotFoundError(f"{path} cannot be read ({e}); a remote --data must be a folder written by "
                                "`effzoo shard` (its effzoo-shards.json beside the tar files)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not an effzoo shard index (format {meta.get('format') if isinstance(meta, dict) else None!r}, "
                         f"expected {FORMAT!r}); write the shards with `effzoo shard`")
    missing = [k for k in ("class_names", "in_chans", "base_resolution", "mean", "std", "splits") if k not in meta]
    if missing or not {"train", "val"} <= set(meta["splits"]):
        raise ValueError(f"{path} lacks {', '.join(missing) or 'a train and a val split'}; write the shards again")
    if len(meta["mean"]) != meta["in_chans"] or len(meta["std"]) != meta["in_chans"]:
        raise ValueError(f"{path}: mean/std have {len(meta['mean'])}/{len(meta['std'])} values for {meta['in_chans']} "
                         "channels; the shards' metadata disagree with each other: write them again")
    for split, record in meta["splits"].items():
        if not is_remote(folder):
            for shard in record["shards"]:
                _check_shard_file(Path(folder) / shard["file"], shard)
            if split in meta.get("label_tables", {}):
                _check_shard_file(Path(folder) / meta["label_tables"][split]["file"], meta["label_tables"][split])
        if sum(s["count"] for s in record["shards"]) != record["count"]:
            raise ValueError(f"{path}: the {split} shards hold {sum(s['count'] for s in record['shards'])} samples, "
                             f"the split {record['count']}; write the shards again")
    return meta


def _check_shard_file(path: Path, record: dict[str, Any]) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"shard {path} is missing ({SHARD_META} lists it); copy it back or write the shards again")
    size = path.stat().st_size
    if size != record["bytes"]:
        raise ValueError(f"shard {path} is {size} bytes, {SHARD_META} says {record['bytes']}: it is truncated or was "
                         "replaced; copy it again from where the shards were written, or write them again")


def index_shard(path: Path) -> Iterator[tuple[str, str, int, int, int]]:
    """(key, member extension, data offset, size, label) per sample in key order, from the tar headers alone."""
    images: dict[str, tuple[str, int, int]] = {}
    labels: dict[str, int] = {}
    try:
        with open(path, "rb") as f:
            for member in iter_members(f, want=lambda name: name.endswith(".cls")):
                key, _, ext = member.name.rpartition(".")
                if ext == "cls":
                    labels[key] = int(member.data)
                elif ext in IMAGE_MEMBERS:
                    images[key] = (ext, member.offset, member.size)
    except (TarError, ValueError, OSError) as e:
        raise ValueError(f"shard {path} cannot be read ({e}); it is truncated or not a tar file: write it again") from None
    unlabelled = sorted(set(images) - set(labels))
    if unlabelled or len(images) != len(labels):
        raise ValueError(f"shard {path}: {len(images)} images and {len(labels)} labels (first unmatched key: "
                         f"{(unlabelled or sorted(set(labels) - set(images)))[0]}); write it again")
    for key in sorted(images):
        yield (key, *images[key], labels[key])


class ShardDataset(LabelledImages):
    """The samples of one split's shards, by random access into the tar files (offsets from `index_shard`).
    Files are opened lazily, once per shard and process (a spawned loader worker opens its own)."""

    def __init__(self, files: list[Path], counts: list[int], in_chans: int, split: str = "train",
                 transform: Callable | None = None):
        rows = [(i, *entry) for i, file in enumerate(files) for entry in index_shard(file)]
        per_shard = np.bincount([r[0] for r in rows], minlength=len(files))
        for file, count, found in zip(files, counts, per_shard):
            if found != count:
                raise ValueError(f"shard {file} holds {found} samples, {SHARD_META} says {count}; "
                                 "write the shards again")
        self.files = [str(f) for f in files]
        self.shard = np.array([r[0] for r in rows], dtype=np.int32)
        self.paths = np.array([sample_path(split, r[1]) for r in rows], dtype=object)  # what labels.csv rows name
        self.ext = np.array([r[2] for r in rows], dtype=object)
        self.offset = np.array([r[3] for r in rows], dtype=np.int64)
        self.size = np.array([r[4] for r in rows], dtype=np.int64)
        self.labels = np.array([r[5] for r in rows], dtype=np.int64)
        self.in_chans = in_chans
        self.transform = transform
        self._handles: dict[int, int] = {}  # shard -> file descriptor

    def _select(self, indices: np.ndarray) -> None:
        for name in ("shard", "paths", "ext", "offset", "size", "labels"):
            setattr(self, name, getattr(self, name)[indices])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}  # open files do not cross process boundaries
        return state

    def read_bytes(self, index: int) -> bytes:
        shard = int(self.shard[index])
        fd = self._handles.get(shard)
        if fd is None:
            fd = self._handles[shard] = os.open(self.files[shard], os.O_RDONLY)
        # pread, not seek + read: forked loader workers inherit the descriptor, and with it a shared file offset
        return os.pread(fd, int(self.size[index]), int(self.offset[index]))

    def load(self, index: int) -> Image.Image:
        return decode(self.ext[index], self.read_bytes(index), self.in_chans, self.files[int(self.shard[index])])

    def __getitem__(self, index: int):
        return self._apply(self.load(index), int(self.labels[index]))


class StreamedSplit:
    """The train split of remote shards while it is streamed: its size, and nothing to index (reading its labels
    or a sample by index would fetch every train shard, so what needs them says so instead)."""

    def __init__(self, location: str, count: int) -> None:
        self.location, self.count = location, count

    def __len__(self) -> int:
        return self.count

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(f"{self.location}: the train split of remote shards is only streamed, it cannot be indexed "
                         "(--train-limit, --tasks and int8 calibration read it by index); copy the shards to a local "
                         "or shared disk and give that folder")

    labels = property(_refuse)
    subset = with_transform = load = __getitem__ = _refuse


class ShardSource(DataSource):
    """A shard folder (local, or a remote URL prefix: effzoo.data.locations) as a data source: metadata from
    `effzoo-shards.json`, splits as `ShardDataset`s (a remote split fetched into the cache first)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = str(root) if is_remote(root) else Path(root).expanduser()
        meta = read_metadata(self.root)
        self.meta = meta
        self.name = str(meta.get("dataset") or str(self.root).rstrip("/").rsplit("/", 1)[-1])
        self.class_names = list(meta["class_names"])
        self.num_classes = len(self.class_names)
        self.in_chans = int(meta["in_chans"])
        self.base_resolution = int(meta["base_resolution"])
        self.mean, self.std = tuple(meta["mean"]), tuple(meta["std"])
        self.hflip = bool(meta.get("hflip", True))
        self.rrc_scale = tuple(meta.get("rrc_scale", (0.08, 1.0)))
        self.has_test = "test" in meta["splits"]
        self.label_tables = {split: read_split_labels(self._local(record), split, meta["splits"][split]["count"])
                             for split, record in meta.get("label_tables", {}).items()}

    def _local(self, record: dict[str, Any]) -> Path:
        """A file of the folder on this machine (a remote one fetched into the cache)."""
        return fetch(join(self.root, record["file"]), record["bytes"]) if self.remote else self.root / record["file"]

    @property
    def remote(self) -> bool:
        return is_remote(self.root)

    def train_stream(self, transform: Callable | None, batch_size: int, *, seed: int, drop_last: bool = True) -> ShardStream:
        """The train split as a stream (effzoo.data.shard_stream): sequential reads, split by rank and worker."""
        shards = self.meta["splits"]["train"]["shards"]
        return ShardStream([join(self.root, s["file"]) for s in shards], [s["count"] for s in shards],
                           in_chans=self.in_chans, batch_size=batch_size, transform=transform, shuffle=True,
                           seed=seed, drop_last=drop_last)

    def split(self, name: str) -> ShardDataset:
        """One split by random access; a remote one is fetched into the cache first (once)."""
        shards = self.meta["splits"][name]["shards"]
        return ShardDataset([self._local(s) for s in shards], [s["count"] for s in shards], self.in_chans, name)

    def load(self) -> Splits:
        """Every split by random access, but a remote train split: that one is only streamed (`StreamedSplit`),
        never fetched whole."""
        splits = self.meta["splits"]
        train = StreamedSplit(str(self.root), splits["train"]["count"]) if self.remote else self.split("train")
        return Splits(train=train, val=self.split("val"), test=self.split("test") if "test" in splits else None)

"""Where shard bytes come from: a local path, or a remote location read by webdataset's own opener.

Remote shard folders are URL prefixes: `https://host/shards`, `s3://bucket/shards`, `gs://bucket/shards`,
`file:///mnt/shards` (what the tests use), under which `effzoo-shards.json` and the tar files lie. They are
opened by `webdataset.gopen`, the reader timm and OpenCLIP stream through (http(s) by `curl`, `gs://` by
`gsutil`); `s3://` goes through the AWS CLI as webdataset documents it (`pipe:aws s3 cp URL -`), since gopen
has no s3 handler of its own. Training streams the train shards straight from there; the evaluation splits
are fetched once into the local cache (`$EFFZOO_CACHE/shards/...`) and read by random access.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import BinaryIO

from ..artifacts.atomic import atomic_write
from .download import cache_dir

REMOTE_PREFIXES = ("pipe:",)


def is_remote(location: str | os.PathLike) -> bool:
    text = str(location)
    return "://" in text or text.startswith(REMOTE_PREFIXES)


def join(root: str | os.PathLike, name: str) -> str:
    """`name` inside a folder or under a URL prefix."""
    return f"{str(root).rstrip('/')}/{name}" if is_remote(root) else str(Path(root) / name)


def open_location(location: str) -> BinaryIO:
    """A readable binary stream: a local file, or a remote location through webdataset's `gopen`."""
    if not is_remote(location):
        return open(location, "rb")
    if location.startswith("s3://"):
        location = f"pipe:aws s3 cp {location} -"
    try:
        from webdataset.gopen import gopen  # deferred: only remote locations need it (and its curl/CLI readers)
    except ImportError:
        raise ImportError(f"reading {location} needs the webdataset package: pip install webdataset") from None
    try:
        return gopen(location, "rb")
    except ValueError as e:  # an unknown scheme
        raise ValueError(f"{location}: cannot be read ({e}); remote shards are read from https://, s3://, gs:// "
                         "or file:// locations") from None


def read_text(location: str) -> str:
    with open_location(location) as f:
        return f.read().decode("utf-8")


def fetch(location: str, size: int) -> Path:
    """A local copy of a remote file of `size` bytes, in the cache: fetched once, atomically (a killed fetch
    leaves no file that reads as complete), checked against the size its metadata records."""
    digest = hashlib.sha1(location.encode()).hexdigest()[:16]
    target = cache_dir("shards", digest, location.rstrip("/").rsplit("/", 1)[-1])
    if target.is_file() and target.stat().st_size == size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)

    def copy(tmp: str) -> None:
        with open_location(location) as source, open(tmp, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        got = os.path.getsize(tmp)
        if got != size:  # checked before the rename: a short copy never lands in the cache
            raise ValueError(f"shard {location} is {got} bytes, its metadata says {size}: it is truncated or was "
                             "replaced there; write the shards again")

    try:
        return atomic_write(target, copy)
    except OSError as e:
        raise OSError(f"fetching {location} failed ({e}); check the location and your access to it") from None

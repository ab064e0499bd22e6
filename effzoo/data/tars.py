"""Reading tar members from a sequential byte stream, without the `tarfile` module.

Why not `tarfile`: its stream mode costs ~50 us per sample in Python on 28 px shards, more than decoding the
PNG; the 512-byte headers are simple enough to parse directly (~5 us), and the same loop serves a local file, a
`curl` pipe and an index pass that seeks over the data. The format read is POSIX ustar as `effzoo shard` and
`tarfile` write it, plus the two extensions other WebDataset writers use for long names: GNU `L` records and
pax `path=` headers. Every header's checksum is verified, so a damaged or foreign file is named, not misread.
"""

from __future__ import annotations

from typing import BinaryIO, Iterator, NamedTuple

BLOCK = 512
_REGULAR = (b"0", b"\0", b"7")  # a file (7: contiguous file, read as one)
_SKIPPED = (b"1", b"2", b"3", b"4", b"5", b"6", b"g")  # links, devices, folders, fifos, global pax: no sample data


class TarError(ValueError):
    """A tar stream that is damaged, truncated or not a tar."""


class Member(NamedTuple):
    name: str
    offset: int  # where the data starts in the file
    size: int
    data: bytes | None  # None when the caller asked to skip it


def iter_members(f: BinaryIO, want=lambda name: True) -> Iterator[Member]:
    """The regular files of the tar read from `f`, in order. Data is read for the names `want` accepts and
    skipped otherwise (by seeking when `f` can, by reading when it is a pipe). A stream that ends at a header
    boundary without the end-of-archive blocks is accepted: counts against the metadata catch a short shard."""
    position, long_name = 0, None
    length = _length(f)  # None for a pipe
    while True:
        header = f.read(BLOCK)
        if not header or header == bytes(BLOCK):
            return
        if len(header) < BLOCK:
            raise TarError(f"it ends inside a header at byte {position}")
        size, kind, name = _parse_header(header, position)
        position += BLOCK
        padded = -(-size // BLOCK) * BLOCK
        if kind in (b"L", b"x"):
            long_name = _long_name(kind, _read(f, padded, position)[:size], long_name)
        elif kind in _REGULAR:
            name, long_name = long_name or name, None
            if want(name):
                data = _read(f, padded, position)[:size]
            else:
                data = None
                _skip(f, padded, position, length)
            yield Member(name, position, size, data)
        elif kind in _SKIPPED:
            _skip(f, padded, position, length)
        else:
            raise TarError(f"unsupported member type {kind!r} at byte {position - BLOCK}")
        position += padded


def _parse_header(header: bytes, position: int) -> tuple[int, bytes, str]:
    stored = header[148:156].split(b"\0", 1)[0].strip()
    # the checksum counts its own 8 bytes as spaces (8 * 32)
    if not stored or int(stored, 8) != sum(header[:148]) + 256 + sum(header[156:]):
        raise TarError(f"the header at byte {position} has a bad checksum (not a tar file, or damaged there)")
    raw_size = header[124:136]
    if raw_size[0] & 0x80:  # GNU base-256 for sizes of 8 GiB and more
        size = int.from_bytes(raw_size[1:], "big")
    else:
        size = int(raw_size.split(b"\0", 1)[0].strip() or b"0", 8)
    name = header[:100].split(b"\0", 1)[0]
    if header[257:262] == b"ustar":
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return size, header[156:157], name.decode("utf-8", "surrogateescape")


def _long_name(kind: bytes, payload: bytes, current: str | None) -> str | None:
    if kind == b"L":
        return payload.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    # pax records: "<length> <key>=<value>\n"
    for record in payload.split(b"\n"):
        _, _, item = record.partition(b" ")
        key, _, value = item.partition(b"=")
        if key == b"path":
            return value.decode("utf-8", "surrogateescape")
    return current


def _read(f: BinaryIO, n: int, position: int) -> bytes:
    data = f.read(n)
    if len(data) < n:
        raise TarError(f"it ends inside a member's data at byte {position + len(data)}")
    return data


def _skip(f: BinaryIO, n: int, position: int, length: int | None) -> None:
    if length is None:
        _read(f, n, position)
    elif position + n > length:  # seeking past the end would not fail: check against the file's length
        raise TarError(f"it ends inside a member's data at byte {length}")
    else:
        f.seek(n, 1)


def _length(f: BinaryIO) -> int | None:
    """The file's length when `f` can seek (and is at its start), else None."""
    try:
        if not f.seekable():
            return None
        start = f.tell()
        length = f.seek(0, 2)
        f.seek(start)
        return length
    except (AttributeError, OSError, ValueError):
        return None

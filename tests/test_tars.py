"""effzoo.data.tars: the tar member reader the shards use, checked against the standard library's tarfile."""

import io
import tarfile

import pytest

from effzoo.data.tars import TarError, iter_members


def make_tar(members, fmt=tarfile.USTAR_FORMAT, folder=False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        if folder:
            info = tarfile.TarInfo("images")
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Pipe(io.RawIOBase):
    """A stream that cannot seek, like a curl pipe."""

    def __init__(self, data: bytes) -> None:
        self.inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        chunk = self.inner.read(min(len(b), 700))  # short reads, as pipes give
        b[:len(chunk)] = chunk
        return len(chunk)


MEMBERS = [("000000000.png", b"\x89PNG" + bytes(1000)), ("000000000.cls", b"3"),
           ("000000001.jpg", bytes(range(256)) * 3), ("000000001.cls", b"7"), ("empty.txt", b"")]


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("long_names", [False, True])
def test_members_equal_tarfile(fmt, long_names):
    members = [((("x" * 120 + "/") if long_names else "") + name, data) for name, data in MEMBERS]
    if long_names and fmt == tarfile.USTAR_FORMAT:
        members = [("d" * 90 + "/" + name, data) for name, data in MEMBERS]  # ustar: the prefix field
    blob = make_tar(members, fmt, folder=True)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        expected = [(m.name, m.offset_data, m.size, tar.extractfile(m).read()) for m in tar if m.isfile()]
    for stream in (io.BytesIO(blob), io.BufferedReader(Pipe(blob))):
        assert [tuple(m) for m in iter_members(stream)] == expected


def test_skipped_data_is_not_returned_and_the_rest_is_intact():
    blob = make_tar(MEMBERS)
    for stream in (io.BytesIO(blob), io.BufferedReader(Pipe(blob))):
        got = list(iter_members(stream, want=lambda name: name.endswith(".cls")))
        assert [m.data for m in got] == [None, b"3", None, b"7", None]
        assert [m.size for m in got] == [len(d) for _, d in MEMBERS]


@pytest.mark.parametrize("cut", [100, 512 + 300, 3 * 512 + 10])
def test_truncation_is_named_with_and_without_seeking(cut):
    blob = make_tar(MEMBERS)[:cut]
    for want in (lambda name: True, lambda name: False):
        for stream in (io.BytesIO(blob), io.BufferedReader(Pipe(blob))):
            with pytest.raises(TarError, match="ends inside"):
                list(iter_members(stream, want))


def test_a_stream_that_ends_between_members_is_accepted():
    blob = make_tar(MEMBERS[:2])
    cut = 512 + 1024 + 512 + 512  # two headers and their data blocks, no end-of-archive blocks
    assert [m.name for m in iter_members(io.BytesIO(blob[:cut]))] == ["000000000.png", "000000000.cls"]


def test_damaged_header_and_foreign_file_are_refused():
    blob = bytearray(make_tar(MEMBERS))
    second = 512 + 1024  # the .cls header: after the PNG's header and its two data blocks
    blob[second + 10] ^= 0xFF
    with pytest.raises(TarError, match=f"header at byte {second} has a bad checksum"):
        list(iter_members(io.BytesIO(bytes(blob))))
    with pytest.raises(TarError, match="bad checksum"):
        list(iter_members(io.BytesIO(b"PK\x03\x04" + bytes(600))))  # a zip, say

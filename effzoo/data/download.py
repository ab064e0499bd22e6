"""Download helper: stream a URL into a cache file atomically, optionally checking an MD5.

Works with any urllib scheme, including ``file://``, which is how the tests exercise it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

_CHUNK = 1 << 20


def cache_dir(*parts: str) -> Path:
    """``$EFFZOO_CACHE`` (default ``~/.cache/effzoo``) joined with ``parts``."""
    root = os.environ.get("EFFZOO_CACHE") or os.path.join("~", ".cache", "effzoo")
    return Path(root).expanduser().joinpath(*parts)


def md5sum(path: str | os.PathLike) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    url: str, dest: str | os.PathLike, *, md5: str | None = None, timeout: float = 60.0
) -> Path:
    """Fetch ``url`` to ``dest`` and return ``dest``.

    The data goes to a temporary file in the destination folder and is renamed into place only
    once complete (and, if ``md5`` is given, verified), so an interrupted or corrupt download
    never leaves a half-written file under the final name. Raises OSError with the URL and the
    reason on network failure, ValueError on a checksum mismatch.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        out.write(chunk)
                        digest.update(chunk)
            except (urllib.error.URLError, OSError, ValueError) as err:
                reason = getattr(err, "reason", err)
                raise OSError(f"download of {url} failed: {reason}") from None
        if md5 is not None and digest.hexdigest() != md5.lower():
            raise ValueError(
                f"checksum mismatch for {url}: got md5 {digest.hexdigest()}, expected {md5}; "
                "the mirror may be corrupt, try again or fetch the file by hand"
            )
        os.replace(tmp_name, dest)
    except BaseException:
        # Leave nothing behind on any failure, including KeyboardInterrupt.
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return dest

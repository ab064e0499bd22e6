"""Progress of long loops over batches, for people watching a command.

`progress(iterable, total, label)` yields the items unchanged and reports on stderr: a rich bar when
stderr is a terminal, otherwise (logs, CI, captured output) one plain line per ~10% of the batches,
e.g. ``evaluate 32px: 40/157 batches (25%), 1,234 img/s, ETA 0:42``.

Library calls are quiet unless asked: a function takes a label (None: quiet), and the command line
turns reporting on for code it does not call directly (a FixRes sweep inside `fixres_stage`) with
`with reporting("fixres-finetune"): ...`. So tests that capture output stay deterministic.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")

_default_prefix: ContextVar[str | None] = ContextVar("effzoo_progress_prefix", default=None)


@contextmanager
def reporting(prefix: str) -> Iterator[None]:
    """Turn progress on, labelled `prefix`, for the calls inside that were given no label of their own."""
    token = _default_prefix.set(prefix)
    try:
        yield
    finally:
        _default_prefix.reset(token)


def resolve_label(label: str | None, detail: str = "") -> str | None:
    """`label` if given, else the prefix of an enclosing `reporting(...)` plus `detail`, else None (quiet)."""
    if label is not None:
        return label
    prefix = _default_prefix.get()
    return None if prefix is None else f"{prefix} {detail}".strip()


def progress(iterable: Iterable[T], total: int | None, label: str | None, *,
             count: Callable[[T], int] | None = None, stream: TextIO | None = None,
             unit: str = "batches") -> Iterator[T]:
    """Yield the items of `iterable`, reporting progress on `stream` (stderr) unless `label` is None.

    `count(item)` is the number of images in an item (for img/s); `total` the number of items, if known;
    `unit` what an item is called in the plain lines.
    """
    if label is None:
        yield from iterable
        return
    stream = stream or sys.stderr
    reporter = _RichBar(total, label, stream) if _is_terminal(stream) else _PlainLines(total, label, stream, unit)
    try:
        for item in iterable:
            yield item  # the consumer's work on the item counts towards its time
            reporter.advance(count(item) if count else 0)
    finally:
        reporter.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or file-like objects without isatty
        return False


def format_seconds(seconds: float) -> str:
    """0:42, 12:05, 1:02:03."""
    s = max(0, int(round(seconds)))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


class _PlainLines:
    """One line per crossed tenth of `total` (and the last batch); only the last line when `total` is unknown."""

    def __init__(self, total: int | None, label: str, stream: TextIO, unit: str = "batches") -> None:
        self.total, self.label, self.stream, self.unit = total or None, label, stream, unit
        self.done = self.images = self.last_tenth = 0
        self.start = time.perf_counter()

    def advance(self, images: int) -> None:
        self.done += 1
        self.images += images
        if self.total is None:
            return
        tenth = self.done * 10 // self.total
        if tenth > self.last_tenth or self.done == self.total:
            self.last_tenth = tenth
            self._write()

    def close(self) -> None:
        if self.total is None and self.done:
            self._write()

    def _write(self) -> None:
        elapsed = time.perf_counter() - self.start
        parts = [f"{self.done}/{self.total} {self.unit} ({100 * self.done // self.total}%)" if self.total
                 else f"{self.done} {self.unit}"]
        if self.images and elapsed > 0:
            parts.append(f"{self.images / elapsed:,.0f} img/s")
        if self.total and self.done < self.total:
            parts.append(f"ETA {format_seconds(elapsed / self.done * (self.total - self.done))}")
        print(f"{self.label}: {', '.join(parts)}", file=self.stream, flush=True)


class _RichBar:
    """rich's bar with batches, img/s and time left, drawn on the terminal behind `stream`."""

    def __init__(self, total: int | None, label: str, stream: TextIO) -> None:
        # deferred: rich's progress machinery is only needed on a terminal
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar: Any = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                 console=Console(file=stream), transient=False)
        self.task = self.bar.add_task(label, total=total, rate="")
        self.images, self.start = 0, time.perf_counter()
        self.bar.start()

    def advance(self, images: int) -> None:
        self.images += images
        elapsed = time.perf_counter() - self.start
        rate = f"{self.images / elapsed:,.0f} img/s" if self.images and elapsed > 0 else ""
        self.bar.update(self.task, advance=1, rate=rate)

    def close(self) -> None:
        self.bar.stop()

"""How a message names a setting: `--on-bad-image skip` to a command-line user, `on_bad_image='skip'` from Python.

Errors are raised deep in the workflows (a data loader meeting a corrupt file, a config check), which
do not know who called them. So messages build a setting's name through `setting()`, and the command
line switches the wording once, around the command it runs (`command_line_wording()`). This module is
the one place that maps a config field to its flag; it imports nothing, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import contextvars
import shlex
from typing import Any, Iterator

_UNSET = object()
_COMMAND_LINE = contextvars.ContextVar("effzoo_command_line_wording", default=False)

# Fields whose flag is not simply `--` + the name with dashes. None: no flag (a config-file key only).
FLAGS: dict[str, str | None] = {
    "data_options": None,
    "weighting_options": None,
}


@contextlib.contextmanager
def command_line_wording() -> Iterator[None]:
    """Within this block, `setting()` names flags (set by the CLI around the command it runs)."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def speaking_to_command_line() -> bool:
    return _COMMAND_LINE.get()


def flag_of(name: str) -> str | None:
    """`--on-bad-image` for `on_bad_image`; None for a setting that only a config file holds."""
    return FLAGS[name] if name in FLAGS else "--" + name.replace("_", "-")


def setting(name: str, value: Any = _UNSET) -> str:
    """The setting `name` (with `value`, when given) in the caller's words.

    Command line: `--image-size 32`, `--small-input` / `--no-small-input` for booleans, lists as
    `1.2,1.1,1.15`; a config-file-only key is shown as YAML (`data_options: {...}`).
    Python: `image_size=32`, `small_input=True`, the value as its repr.
    """
    if not speaking_to_command_line():
        return name if value is _UNSET else f"{name}={value!r}"
    flag = flag_of(name)
    if flag is None:
        return f"{name} (config file)" if value is _UNSET else f"{name}: {value!r} (config file)"
    if value is _UNSET:
        return flag
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    if isinstance(value, (list, tuple)):
        value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    elif isinstance(value, float):
        value = f"{value:g}"
    return f"{flag} {shlex.quote(str(value))}"

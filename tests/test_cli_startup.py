"""Start-up of the `effzoo` command (issue 16): building the parser, `--help` of every command and
argument errors import no torch, timm, torchvision, Lightning or matplotlib.

Each check runs in a fresh interpreter: this test process has imported torch long ago.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from effzoo.cli import COMMANDS, build_parser

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pytorch_lightning", "lightning", "lightning_fabric", "timm", "torchvision", "matplotlib")

# Prints, as JSON, the heavy top-level packages a fresh interpreter has imported after `code` ran.
PROBE = textwrap.dedent("""
    import contextlib, io, json, sys
    {code}
    print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))))
""")


def heavy_after(code: str) -> list[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE.format(code=textwrap.dedent(code), heavy=HEAVY)], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_building_the_parser_imports_nothing_heavy():
    assert heavy_after("from effzoo.cli import build_parser; build_parser()") == []


def test_every_subcommands_parser_and_help_import_nothing_heavy():
    names = [name for name, _, _ in COMMANDS]
    code = f"""
        from effzoo.cli import build_parser
        parser = build_parser()  # every subcommand's arguments
        for argv in {[[n, "--help"] for n in names] + [["zoo", "add", "--help"], ["--help"]]!r}:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
                parser.parse_args(argv)
    """
    assert heavy_after(code) == []


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["train", "--bogus"],
    ["evaluate"],
    ["export", "--checkpoint", "x", "--format", "tflite"],
    ["benchmark", "--model", "efficientnet_b0", "--bench", "nope"],
    ["fixres-finetune", "--adapt", "everything"],
    ["mtl-report", "--metric", "train"],
    ["zoo"],
])
def test_argument_errors_import_nothing_heavy(argv):
    code = f"""
        from effzoo.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                main({argv!r})
            except SystemExit as e:
                assert e.code == (0 if {argv!r} == ["--help"] else 2), e.code
            else:
                raise AssertionError("no SystemExit")
    """
    assert heavy_after(code) == []


def test_unknown_flag_exits_2_naming_it():
    out = subprocess.run([sys.executable, "-m", "effzoo", "train", "--bogus"], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 2
    assert "--bogus" in out.stderr and "Traceback" not in out.stderr


def test_every_command_module_has_add_arguments_and_run():
    import importlib

    for name, _, module_path in COMMANDS:
        module = importlib.import_module(module_path)
        assert module_path.startswith("effzoo.cli."), name
        assert callable(module.add_arguments) and callable(module.run), name
    usage = build_parser(commands=()).format_help()  # lists every command without importing any
    assert all(f"    {name}" in usage for name, _, _ in COMMANDS)

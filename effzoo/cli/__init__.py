"""The `effzoo` command: the top layer. Each subcommand is one module of this package with
`add_arguments(parser)` and `run(args) -> exit code`; the work itself is done by the layers below.

Start-up is kept short: `main` imports only the module of the command it runs (none for `--help`),
and a command module imports only light, torch-free names at its top (option tables, choice lists)
and its workflow modules inside `run()`. So `effzoo --help` and argument errors answer at once instead of after
the seconds torch and Lightning take to import. User errors become one line, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Iterable, Sequence

from ..wording import command_line_wording

# (name, help, module with add_arguments(parser) and run(args) -> exit code)
COMMANDS: list[tuple[str, str, str]] = [
    ("models", "list the registered models with params, MACs and resolution", "effzoo.cli.models"),
    ("train", "train a model (compound-scaled by --phi) on a dataset; export weights, metadata and a card", "effzoo.cli.train"),
    ("evaluate", "metrics of a checkpoint on a split at one or several test resolutions (table, JSON, plots)", "effzoo.cli.evaluate"),
    ("fixres-finetune", "choose the test resolution on validation data and fine-tune the model at it (FixRes)", "effzoo.cli.fixres"),
    ("search", "grid-search alpha, beta, gamma at phi = 1 on your data (the paper's step 1), resumable", "effzoo.cli.search"),
    ("benchmark", "inference and training throughput next to timm's model of the same name", "effzoo.cli.benchmark"),
    ("mtl-report", "single-task baselines vs the multi-task model of --tasks, paired by seed: Δ per task and Δm", "effzoo.cli.mtl_report"),
    ("predict", "top-k classes (every head of a multi-task model) for image files, as a table, JSON Lines or CSV", "effzoo.cli.predict"),
    ("shard", "write a dataset as WebDataset tar shards with their metadata, for --data of every command", "effzoo.cli.shard"),
    ("export", "export a checkpoint to ONNX or TorchScript, checked against eager outputs", "effzoo.cli.export"),
    ("card", "regenerate a checkpoint's model card and factsheet (optionally with a fresh evaluation)", "effzoo.cli.card"),
    ("zoo", "the shipped checkpoints: list, verify sha256s, add a trained run, plot accuracy vs MACs", "effzoo.cli.zoo"),
]


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The `effzoo` parser. Every subcommand is listed with its help; the arguments of those named in
    `commands` (default: all) are added by their modules. `main` fills in only the command it runs."""
    wanted = None if commands is None else set(commands)
    parser = argparse.ArgumentParser(prog="effzoo", description="EfficientNet compound scaling as a model zoo.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, module_path in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if wanted is None or name in wanted:
            module = importlib.import_module(module_path)
            module.add_arguments(p)
            p.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The top-level parser has no options but -h, so a command, if any, is the first word.
    parser = build_parser(argv[:1])
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int | None] = args.run
    try:
        with command_line_wording():  # messages name flags (--on-bad-image skip), not Python arguments
            return int(run(args) or 0)
    except (ValueError, OSError) as e:
        # User errors (bad names, paths, numbers) and the machine's (a full disk, a missing permission)
        # get one line, not a traceback.
        print(f"effzoo {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"effzoo {args.command}: interrupted", file=sys.stderr)
        return 130

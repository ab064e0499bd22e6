"""The `effzoo` command. Each subcommand's arguments and logic live beside the code they drive;
this file only wires them into one parser and turns user errors into one clear line."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

# (name, help, module with add_arguments(parser) and run(args) -> exit code)
COMMANDS: list[tuple[str, str, str]] = [
    ("models", "list the registered models with params, MACs and resolution", "effzoo.evaluation.listing"),
    ("train", "train a model (compound-scaled by --phi) on a dataset; export weights, metadata and a card", "effzoo.training.cli_train"),
    ("evaluate", "metrics of a checkpoint on a split at one or several test resolutions (table, JSON, plots)", "effzoo.evaluation.cli_evaluate"),
    ("fixres-finetune", "choose the test resolution on validation data and fine-tune the model at it (FixRes)", "effzoo.training.cli_fixres"),
    ("search", "grid-search alpha, beta, gamma at phi = 1 on your data (the paper's step 1), resumable", "effzoo.training.cli_search"),
    ("benchmark", "inference and training throughput next to timm's model of the same name", "effzoo.evaluation.benchmark"),
    ("mtl-report", "single-task baselines vs the multi-task model of --tasks, paired by seed: Δ per task and Δm", "effzoo.training.cli_mtl_report"),
    ("export", "export a checkpoint to ONNX or TorchScript, checked against eager outputs", "effzoo.export"),
    ("card", "regenerate a checkpoint's model card and factsheet (optionally with a fresh evaluation)", "effzoo.cards.cli"),
    ("zoo", "the shipped checkpoints: list, verify sha256s, add a trained run, plot accuracy vs MACs", "effzoo.zoo"),
]


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="effzoo", description="EfficientNet compound scaling as a model zoo.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, module_path in COMMANDS:
        module = importlib.import_module(module_path)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int | None] = args.run
    try:
        return int(run(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        # User errors (bad names, paths, numbers) get one line, not a traceback.
        print(f"effzoo {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"effzoo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

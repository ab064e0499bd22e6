"""`effzoo train`: one flag per `TrainConfig` option, `--config FILE` underneath, `--resume` on top.

Precedence, lowest first: TrainConfig defaults, the built-in recipe of the dataset (digits), the
saved `config.yaml` of the run being resumed, `--config FILE`, then the flags actually typed.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from ..training.config import DATA_RECIPES, TrainConfig, field_names, from_dict, load_yaml, resolve

EXAMPLES = """examples:
  effzoo train --phi 0                                   # EfficientNet on the bundled digits, CPU
  effzoo train --config configs/fashion_mnist.yaml --data-dir ~/fashion-mnist
  effzoo train --model efficientnet --phi 2 --data /data/imagenet --config configs/efficientnet_imagenet.yaml \\
               --accelerator gpu --devices 8 --num-nodes 2 --strategy ddp --precision bf16-mixed
  effzoo train --output runs/digits-efficientnet-phi0 --resume --epochs 30   # continue (and extend) a run
  effzoo train --pretrained effzoo_efficientnet_phi-4_fashion-mnist_28px_16ep --data digits   # fine-tune a zoo model
  effzoo train --pretrained timm/efficientnet_b0.ra_in1k --data path/to/folder --freeze stages:3 --layer-decay 0.7
"""
METAVARS = {"int": "N", "float": "X", "number": "N|X", "floats": "A,B,G", "devices": "N|auto"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXAMPLES
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--config", metavar="FILE", help="YAML recipe (keys as the long options, with _); flags override it")
    for f in dataclasses.fields(TrainConfig):
        kind, choices = f.metadata["kind"], f.metadata["choices"]
        if kind == "dict":
            continue  # config files only
        flag = "--" + f.name.replace("_", "-")
        help_text = help_with_default(f)
        if kind == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            p.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, choices=choices,
                           metavar=None if choices else (f.metadata["metavar"] or METAVARS.get(kind, "STR")), help=help_text)


def help_with_default(f: dataclasses.Field) -> str:
    """The option's help and the default a run really gets: a built-in data recipe's value first
    (`digits 8, fashion-mnist 16`), then the plain default (or what an empty one means)."""
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    plain = f.metadata["shown_default"] or _show(default)
    recipes = ", ".join(f"{data} {_show(recipe[f.name])}" for data, recipe in DATA_RECIPES.items() if f.name in recipe)
    return f"{f.metadata['help']} (default: " + (f"data recipe: {recipes}; else {plain})" if recipes else f"{plain})")


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Merge defaults, the resumed run's saved config, the --config file and the typed flags."""
    # deferred: torch/Lightning take seconds to import; --help and argument errors must not wait
    from ..training.run import default_output

    given = {k: v for k, v in vars(args).items() if k in field_names()}
    from_file = load_yaml(args.config) if getattr(args, "config", None) else {}
    layered: dict[str, Any] = {**from_file, **given}
    if layered.get("resume"):
        output = layered.get("output") or default_output(from_dict({**layered, "resume": False}))
        saved = Path(output) / "config.yaml"
        if saved.is_file():
            layered = {**load_yaml(saved), **from_file, **given}
    return resolve(layered, source="--config / flags")


def run(args: argparse.Namespace) -> int:
    # deferred: torch/Lightning take seconds to import; --help and argument errors must not wait
    from ..training.run import env_rank, train

    cfg = resolve_config(args)
    output = train(cfg)
    if env_rank() == 0:
        print(f"effzoo train: done; model, checkpoints, metrics and card in {output}")
    return 0

"""`effzoo models [PATTERN] [--json]`: a table of registered models with params, MACs and resolution."""

from __future__ import annotations

import argparse
import json


def model_rows(pattern: str = "*", macs: bool = True) -> list[dict]:
    """One row per registered model matching `pattern`, measured on a randomly initialized instance."""
    # deferred: torch/Lightning take seconds to import; --help and argument errors must not wait
    from ..models import create_model, list_models, model_info

    names = list_models(pattern)
    if not names:
        raise ValueError(f"no model matches {pattern!r}; try `effzoo models` to see them all")
    rows = []
    for name in names:
        model = create_model(name)
        cfg = model.pretrained_cfg
        info = model_info(model) if macs else {"params": sum(p.numel() for p in model.parameters()), "macs": None}
        rows.append({
            "name": name,
            "family": cfg["scaling"]["family"],
            "params": info["params"],
            "macs": info["macs"],
            "resolution": cfg["input_size"][-1],
            "width": round(cfg["scaling"]["width"], 4),
            "depth": round(cfg["scaling"]["depth"], 4),
        })
    return rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'efficientnet_b*'")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--no-macs", action="store_true", help="skip counting MACs (faster for the big models)")


def run(args: argparse.Namespace) -> int:
    rows = model_rows(args.pattern, macs=not args.no_macs)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"effzoo models ({len(rows)})")
    for col in ("name", "family", "params (M)", "GMACs", "resolution", "width", "depth"):
        table.add_column(col, justify="left" if col in ("name", "family") else "right", no_wrap=True)
    for r in rows:
        gmacs = "-" if r["macs"] is None else f"{r['macs'] / 1e9:.3f}"
        table.add_row(r["name"], r["family"], f"{r['params'] / 1e6:.2f}", gmacs, str(r["resolution"]),
                      f"{r['width']:g}", f"{r['depth']:g}")
    Console(width=max(100, Console().width)).print(table)  # never truncate names in pipes/CI logs
    return 0

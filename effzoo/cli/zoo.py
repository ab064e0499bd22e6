"""`effzoo zoo list|verify|add|pareto`: the shipped checkpoints.

- `list`: the index as a table;
- `verify`: every file of every model against its sha256 in the index (exit 1 on a mismatch);
- `add`: copy an `effzoo train` output folder into the zoo, write its card and index it;
- `pareto`: accuracy vs MACs of the zoo as a PNG, with the paper's B0-B7 beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Collection, Sequence

from ..artifacts.zoo_index import ENV_VAR

LIST_COLUMNS = ("name", "dataset", "params", "MACs", "test top-1", "sha256")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=None, help=f"zoo folder (default: ${ENV_VAR} or the repo's checkpoints/)")
    sub = p.add_subparsers(dest="zoo_command", required=True, metavar="ACTION")
    sub.add_parser("list", help="the index as a table")
    sub.add_parser("verify", help="check every file of every model against the index (exit 1 on a mismatch)")
    a = sub.add_parser("add", help="copy an `effzoo train` output folder into the zoo, write its card, index it")
    a.add_argument("folder", help="the output folder of `effzoo train` (or `effzoo fixres-finetune`), its "
                                  "model.safetensors, or a zoo name (re-index it, or copy it under --name)")
    a.add_argument("--name", required=True, help="zoo name, e.g. effzoo_efficientnet_phi-4_digits")
    a.add_argument("--command", action="append", default=[],
                   help="the exact command(s) that built the run (repeatable; omit to re-index a model already listed)")
    a.add_argument("--seconds", type=float, default=None, help="measured training wall-clock seconds")
    a.add_argument("--hardware", default=None, help="where it was trained, e.g. '2 CPU cores'")
    a.add_argument("--evaluate", action="store_true", help="run the card's per-class / per-resolution evaluation")
    a.add_argument("--data-dir", default=None)
    pp = sub.add_parser("pareto", help="accuracy vs MACs of the zoo (PNG), with the paper's B0-B7 beside it")
    pp.add_argument("--output", default=None, help="PNG path (default: ROOT/pareto.png, beside the index)")
    pp.add_argument("--no-reference", action="store_true", help="omit the paper's Table 2 panel")


def run(args: argparse.Namespace) -> int:
    # deferred: torch/Lightning take seconds to import; --help and argument errors must not wait
    from ..artifacts.zoo_index import file_digest_problems, model_folder, read_index

    cmd = args.zoo_command
    if cmd == "list":
        rows = [list_row(n, e) for n, e in read_index(args.root)["models"].items()]
        print(format_table(LIST_COLUMNS, rows, right={"params", "MACs", "test top-1"}))
    elif cmd == "verify":
        bad = []
        for n, e in read_index(args.root)["models"].items():
            bad += file_digest_problems(model_folder(n, args.root), e.get("files", {}))
        print("\n".join(bad) if bad else "all shipped files match the index")
        return 1 if bad else 0
    elif cmd == "add":
        from ..artifacts.zoo_index import resolve_export_folder
        from ..evaluation.publish import add_model

        try:  # a run folder, its weights, or a zoo name: of this zoo (re-index), else of the default one (copy)
            folder, _ = resolve_export_folder(args.folder, args.root)
        except FileNotFoundError:
            if args.root is None:
                raise
            folder, _ = resolve_export_folder(args.folder)
        e = add_model(folder, args.name, args.command, root=args.root, seconds=args.seconds,
                      hardware=args.hardware, evaluate=args.evaluate, data_dir=args.data_dir)
        print(json.dumps({k: e[k] for k in ("name", "sha256", "params", "macs", "test_macs", "metrics")}, indent=2))
    elif cmd == "pareto":
        from ..evaluation.pareto import pareto_plot, zoo_points

        from ..artifacts.zoo_index import checkpoints_dir

        points = zoo_points(args.root)  # first: it names the problem when there is no zoo
        # beside the index it plots, not wherever the command happens to run
        output = args.output or Path(args.root or checkpoints_dir()) / "pareto.png"
        print(f"wrote {pareto_plot(points, output, reference=not args.no_reference)} ({len(points)} checkpoints)")
    return 0


def list_row(name: str, e: dict[str, Any]) -> list[str]:
    top1 = e["metrics"].get("test_top1")
    return [name, str(e["dataset"]), f"{e['params'] / 1e6:.2f}M", f"{e['macs'] / 1e6:.2f}M",
            "n/a" if top1 is None else f"{100 * top1:.2f}%", e["sha256"][:12]]


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[str] = ()) -> str:
    """Plain text columns as wide as their longest cell (names of any length stay aligned; easy to grep)."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    lines = []
    for row in [list(header), *rows]:
        cells = [str(c).rjust(w) if h in right else str(c).ljust(w) for c, w, h in zip(row, widths, header)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)

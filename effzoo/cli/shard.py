"""`effzoo shard`: write a dataset effzoo reads (an image folder, fashion-mnist, digits) as WebDataset tar
shards with their metadata, so that training, evaluation and FixRes read a few large files instead of
many small ones (`effzoo.data.shards`). Killed and run again, it keeps the shards it had finished."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ENCODINGS = ("keep", "png", "raw")  # kept here too: `--help` must not import torch
LOG = "effzoo-shard.log"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="digits, fashion-mnist, or a folder with train/ and val/ class subfolders")
    p.add_argument("--output", required=True, help="the shard folder to write (tar files + effzoo-shards.json)")
    p.add_argument("--encode", choices=ENCODINGS, default="keep",
                   help="keep: a folder's image files as they are (PNG for in-memory datasets); png: re-encode "
                        "losslessly; raw: uint8 pixels (.npy), the fastest to read and the largest (default: keep)")
    p.add_argument("--shard-samples", type=int, default=5000, help="samples per tar file (default: 5000)")
    p.add_argument("--data-dir", help="where the dataset files are (fashion-mnist IDX files)")
    p.add_argument("--seed", type=int, default=0, help="the seed of the train/val split of datasets without one")
    p.add_argument("--val-fraction", type=float, help="share of the training pool held out for validation")


def run(args: argparse.Namespace) -> int:
    # deferred: torch takes seconds to import; --help and argument errors must not wait
    from ..data import ShardWriter, create_source
    from ..evaluation.progress import progress

    source = create_source(args.data, data_dir=args.data_dir, seed=args.seed, val_fraction=args.val_fraction)
    writer = ShardWriter(source, args.output, encode=args.encode, shard_samples=args.shard_samples)
    log = Path(args.output) / LOG  # a line per shard, kept across reruns: what a long run did, after the terminal
    for record in progress(writer, len(writer), "effzoo shard", count=lambda record: record["count"], unit="shards"):
        _log(log, f"{record['file']}: {record['count']} samples, {record['bytes'] / 2**20:.1f} MB")
    meta = writer.finish()
    sizes = ", ".join(f"{s} {len(ds)} images in {len(writer.records[s])} shards" for s, ds in writer.splits.items())
    _log(log, f"done: {sizes}; {meta}")
    print(f"effzoo shard: {sizes}; {meta} (log: {log})")
    return 0


def _log(path: Path, line: str) -> None:
    with open(path, "a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

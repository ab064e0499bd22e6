"""Loader throughput of the streaming formats issue #19 chooses between, on the same Fashion-MNIST training
images: an image folder of PNG files (effzoo's folder path today), WebDataset tar shards (what timm and
OpenCLIP read) and LitData chunks (Lightning's streaming library), each holding the same PNG bytes, or the
raw uint8 pixels (`raw`), and effzoo's own shards (`effzoo shard`: WebDataset tars read by random access, the
train split only); read through the Fashion-MNIST recipe's train transform by 2 loader workers.

    python benchmarks/shard_formats.py [--work /tmp/shard-formats] [--limit 60000] [--workers 2] [--batch-size 64]
                                       [--rounds 2] [--out FILE.json]

Writes each layout once under --work (kept for reruns), then reads each for one shuffled epoch per round,
rounds interleaved, and prints images/s and the ratio to the image folder (issue #19's target: shards >= 2x).
Run alone: two torch jobs on 2 cores slow each other several-fold. Needs dataset-fashion-mnist, and
`pip install webdataset litdata` (benchmark only: effzoo itself reads and writes its tars with the standard library).
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from effzoo.data.fashion_mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, load_fashion_mnist_arrays
from effzoo.data.transforms import train_transform

MEAN, STD = FASHION_MNIST_MEAN, FASHION_MNIST_STD


def recipe_transform() -> Callable:
    """configs/fashion_mnist.yaml's: RandomResizedCrop(28, scale 0.6-1) + flip + ToTensor + Normalize."""
    return train_transform(28, 1, MEAN, STD, "bicubic", None, 0.0, scale=(0.6, 1.0), hflip=True)


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def decode(payload: bytes, raw: bool) -> Image.Image:
    if raw:
        return Image.fromarray(np.frombuffer(payload, dtype=np.uint8).reshape(28, 28))
    return Image.open(io.BytesIO(payload)).convert("L")


# -- writers (once; skipped when the layout exists) ---------------------------------------------------------
def write_folder(root: Path, images: list[bytes], labels: np.ndarray) -> None:
    for c in range(len(FASHION_MNIST_CLASSES)):
        (root / f"{c}").mkdir(parents=True, exist_ok=True)
    for i, (png, label) in enumerate(zip(images, labels)):
        (root / f"{label}" / f"{i:06d}.png").write_bytes(png)


def write_webdataset(root: Path, payloads: list[bytes], labels: np.ndarray, ext: str, per_shard: int) -> None:
    import webdataset as wds

    root.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(str(root / "train-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for i, (payload, label) in enumerate(zip(payloads, labels)):
            sink.write({"__key__": f"{i:06d}", ext: payload, "cls": str(int(label)).encode()})


def _litdata_item(item: tuple[bytes, int]) -> dict[str, Any]:
    return {"image": item[0], "label": item[1]}


def write_litdata(root: Path, payloads: list[bytes], labels: np.ndarray, chunk_bytes: str) -> None:
    from litdata import optimize

    optimize(fn=_litdata_item, inputs=[(p, int(y)) for p, y in zip(payloads, labels)], output_dir=str(root),
             chunk_bytes=chunk_bytes, num_workers=1, mode="overwrite", reorder_files=False)


# -- readers ------------------------------------------------------------------------------------------------
class FolderDataset(Dataset):
    def __init__(self, root: Path, transform: Callable) -> None:
        self.files = sorted(root.glob("*/*.png"))
        self.labels = [int(f.parent.name) for f in self.files]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        with Image.open(self.files[i]) as im:
            return self.transform(im.convert("L")), self.labels[i]


class WdsSample:
    def __init__(self, transform: Callable, ext: str) -> None:
        self.transform, self.ext = transform, ext

    def __call__(self, sample: dict[str, Any]):
        return self.transform(decode(sample[self.ext], self.ext == "raw")), int(sample["cls"])


class LitSample:
    def __init__(self, transform: Callable, raw: bool) -> None:
        self.transform, self.raw = transform, raw

    def __call__(self, item: dict[str, Any]):
        return self.transform(decode(item["image"], self.raw)), int(item["label"])


def folder_loader(root: Path, args: argparse.Namespace) -> DataLoader:
    return DataLoader(FolderDataset(root, recipe_transform()), batch_size=args.batch_size, shuffle=True,
                      num_workers=args.workers, drop_last=True)


def webdataset_loader(root: Path, args: argparse.Namespace, ext: str) -> DataLoader:
    import webdataset as wds

    urls = sorted(str(p) for p in root.glob("train-*.tar"))
    ds = (wds.WebDataset(urls, shardshuffle=len(urls), nodesplitter=wds.split_by_node, seed=0)
          .shuffle(1000).map(WdsSample(recipe_transform(), ext)).batched(args.batch_size, partial=False))
    return DataLoader(ds, batch_size=None, num_workers=args.workers)


def litdata_loader(root: Path, args: argparse.Namespace, raw: bool) -> DataLoader:
    from litdata import StreamingDataLoader, StreamingDataset

    ds = StreamingDataset(str(root), shuffle=True, seed=0, drop_last=True, transform=LitSample(recipe_transform(), raw))
    return StreamingDataLoader(ds, batch_size=args.batch_size, num_workers=args.workers, drop_last=True)


def write_effzoo(root: Path, data_dir: str, encode: str, per_shard: int) -> None:
    from effzoo.data import FashionMNISTSource, write_shards

    write_shards(FashionMNISTSource(data_dir=data_dir), root, encode=encode, shard_samples=per_shard)


def effzoo_loader(root: Path, args: argparse.Namespace) -> DataLoader:
    """What `effzoo train --data SHARDS` reads: random access into the tars (the train split: 54,000 of the 60,000)."""
    from effzoo.data import ShardSource

    train = ShardSource(root).load().train.with_transform(recipe_transform())
    return DataLoader(train, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True)


def effzoo_stream_loader(root: Path, args: argparse.Namespace) -> DataLoader:
    """What `effzoo train --data SHARDS` streams: the train split, sequential reads, whole batches per worker."""
    from effzoo.data import ShardSource

    stream = ShardSource(root).train_stream(recipe_transform(), args.batch_size, seed=0)
    return DataLoader(stream, batch_size=None, num_workers=args.workers)


def memory_loader(images: np.ndarray, labels: np.ndarray, args: argparse.Namespace) -> DataLoader:
    """The ceiling: the same transform on decoded in-memory arrays (no file, no decode)."""
    from effzoo.data import ArrayImageDataset

    return DataLoader(ArrayImageDataset(images, labels, transform=recipe_transform()), batch_size=args.batch_size,
                      shuffle=True, num_workers=args.workers, drop_last=True)


def one_epoch(loader: DataLoader) -> tuple[int, float]:
    start, seen = time.perf_counter(), 0
    for x, _ in loader:
        seen += x.shape[0]
    return seen, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/shard-formats")
    p.add_argument("--limit", type=int, default=60000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--per-shard", type=int, default=5000, help="WebDataset samples per tar")
    p.add_argument("--chunk-bytes", default="8MB", help="LitData chunk size")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--out")
    args = p.parse_args()
    work = Path(args.work)
    arrays = load_fashion_mnist_arrays(args.data_dir)
    images, labels = arrays["train_images"][: args.limit], arrays["train_labels"][: args.limit]
    layouts: dict[str, tuple[Callable[[], None], Callable[[], DataLoader]]] = {}
    pngs: list[bytes] | None = None

    def encoded() -> list[bytes]:
        nonlocal pngs
        pngs = pngs or [png_bytes(im) for im in images]
        return pngs

    raws = [im.tobytes() for im in images]
    layouts["image folder (PNG files)"] = (lambda: write_folder(work / "folder", encoded(), labels),
                                           lambda: folder_loader(work / "folder", args))
    layouts["WebDataset (PNG)"] = (lambda: write_webdataset(work / "wds-png", encoded(), labels, "png", args.per_shard),
                                   lambda: webdataset_loader(work / "wds-png", args, "png"))
    layouts["WebDataset (raw)"] = (lambda: write_webdataset(work / "wds-raw", raws, labels, "raw", args.per_shard),
                                   lambda: webdataset_loader(work / "wds-raw", args, "raw"))
    layouts["LitData (PNG)"] = (lambda: write_litdata(work / "lit-png", encoded(), labels, args.chunk_bytes),
                                lambda: litdata_loader(work / "lit-png", args, raw=False))
    layouts["LitData (raw)"] = (lambda: write_litdata(work / "lit-raw", raws, labels, args.chunk_bytes),
                                lambda: litdata_loader(work / "lit-raw", args, raw=True))
    for enc in ("png", "raw"):
        layouts[f"effzoo shards ({enc})"] = (lambda enc=enc: write_effzoo(work / f"effzoo-{enc}", args.data_dir, enc, args.per_shard),
                                             lambda enc=enc: effzoo_loader(work / f"effzoo-{enc}", args))
    for enc in ("png", "raw"):
        layouts[f"effzoo stream ({enc})"] = (lambda: None, lambda enc=enc: effzoo_stream_loader(work / f"effzoo-{enc}", args))
    layouts["in-memory arrays (ceiling)"] = (lambda: None, lambda: memory_loader(images, labels, args))
    folders = {"image folder (PNG files)": "folder", "WebDataset (PNG)": "wds-png", "WebDataset (raw)": "wds-raw",
               "LitData (PNG)": "lit-png", "LitData (raw)": "lit-raw", "effzoo shards (png)": "effzoo-png",
               "effzoo shards (raw)": "effzoo-raw", "effzoo stream (png)": "effzoo-png", "effzoo stream (raw)": "effzoo-raw",
               "in-memory arrays (ceiling)": "memory"}
    write_seconds = {}
    for name, (write, _) in layouts.items():
        target = work / folders[name]
        target.mkdir(parents=True, exist_ok=True)
        done = target / ".complete"
        if not done.is_file():
            start = time.perf_counter()
            write()
            write_seconds[name] = round(time.perf_counter() - start, 1)
            done.write_text("ok")
            print(f"wrote {name} in {write_seconds[name]} s", flush=True)
    rates: dict[str, list[float]] = {name: [] for name in layouts}
    for r in range(args.rounds):
        for name, (_, make_loader) in layouts.items():
            seen, seconds = one_epoch(make_loader())
            rates[name].append(seen / seconds)
            print(f"round {r + 1}: {name}: {seen} images in {seconds:.1f} s, {seen / seconds:.0f} images/s", flush=True)
    base = max(rates["image folder (PNG files)"])
    print(f"\n{'layout':28} {'images/s (best)':>16} {'vs folder':>10} {'size MB':>9}")
    rows = []
    for name in layouts:
        size = sum(f.stat().st_size for f in (work / folders[name]).rglob("*") if f.is_file()) / 2**20
        rows.append({"layout": name, "images_per_s": round(max(rates[name])), "vs_folder": round(max(rates[name]) / base, 2),
                     "size_mb": round(size, 1), "write_s": write_seconds.get(name)})
        print(f"{name:28} {max(rates[name]):16.0f} {max(rates[name]) / base:10.2f} {size:9.1f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"images": len(labels), "workers": args.workers, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

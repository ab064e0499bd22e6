"""Loader throughput of the streaming formats issue #19 chooses between, on the same Fashion-MNIST training
images: an image folder of PNG files (effzoo's folder path today), WebDataset tar shards (what timm and
OpenCLIP read) and LitData chunks (Lightning's streaming library), each holding the same PNG bytes, or the
raw uint8 pixels (`raw`), and effzoo's own shards (`effzoo shard`: WebDataset tars read by random access, the
train split only); read through the Fashion-MNIST recipe's train transform by 2 loader workers.

With `--photos N`, the same comparison at photo sizes instead, where a tar's 512-byte blocks are noise and
each reader's cost per sample is what differs: N RGB JPEGs of about ImageNet's shape (300-427 px high, 1-1.5
times as wide, quality 90, cut at random from scikit-learn's two bundled photographs with colour jitter), ten
classes, read through an ImageNet train transform at 224 px (RandomResizedCrop + flip + normalize; no
RandAugment, which would only hide the readers further). No raw layouts there: 224 px pixels are 150 KB each.

    python benchmarks/shard_formats.py [--work /tmp/shard-formats] [--limit 60000] [--workers 2] [--batch-size 64]
                                       [--rounds 2] [--photos N] [--out FILE.json]

Writes each layout once under --work (kept for reruns), then reads each for one shuffled epoch per round,
rounds interleaved, and prints images/s and the ratio to the image folder (issue #19's target: shards >= 2x).
Run alone: two torch jobs on 2 cores slow each other several-fold. Needs dataset-fashion-mnist, and
`pip install webdataset litdata` (benchmark only: effzoo itself reads and writes its tars with the standard library).
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from effzoo.data.fashion_mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, load_fashion_mnist_arrays
from effzoo.data.transforms import train_transform
from effzoo.models.base import IMAGENET_MEAN, IMAGENET_STD

MEAN, STD = FASHION_MNIST_MEAN, FASHION_MNIST_STD


PHOTOS = False  # set by --photos: JPEG photos at 224 px instead of Fashion-MNIST
IMAGE_EXT = "png"


def recipe_transform() -> Callable:
    """configs/fashion_mnist.yaml's: RandomResizedCrop(28, scale 0.6-1) + flip + ToTensor + Normalize; with
    --photos the ImageNet one at 224 px without RandAugment."""
    if PHOTOS:
        return train_transform(224, 3, IMAGENET_MEAN, IMAGENET_STD, "bilinear", None, 0.0, hflip=True)
    return train_transform(28, 1, MEAN, STD, "bicubic", None, 0.0, scale=(0.6, 1.0), hflip=True)


def synthesize_photos(n: int) -> tuple[list[bytes], np.ndarray]:
    """n JPEGs of about ImageNet's sizes, cut from scikit-learn's bundled photographs (see the docstring)."""
    from sklearn.datasets import load_sample_images

    bases, rng, out = load_sample_images().images, np.random.default_rng(0), []
    for i in range(n):
        base = bases[i % len(bases)]
        h = int(rng.integers(300, base.shape[0] + 1))
        w = min(base.shape[1], int(h * rng.uniform(1.0, 1.5)))
        y, x = int(rng.integers(0, base.shape[0] - h + 1)), int(rng.integers(0, base.shape[1] - w + 1))
        crop = base[y:y + h, x:x + w] * rng.uniform(0.75, 1.25, size=3)
        image = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8))
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out, np.arange(n) % 10


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def decode(payload: bytes, raw: bool) -> Image.Image:
    if raw:
        return Image.fromarray(np.frombuffer(payload, dtype=np.uint8).reshape(28, 28))
    return Image.open(io.BytesIO(payload)).convert("RGB" if PHOTOS else "L")


# -- writers (once; skipped when the layout exists) ---------------------------------------------------------
def write_folder(root: Path, images: list[bytes], labels: np.ndarray) -> None:
    for c in range(len(FASHION_MNIST_CLASSES)):
        (root / f"{c}").mkdir(parents=True, exist_ok=True)
    for i, (payload, label) in enumerate(zip(images, labels)):
        (root / f"{label}" / f"{i:06d}.{IMAGE_EXT}").write_bytes(payload)
    if PHOTOS:  # `effzoo shard` reads it as an image folder: train/ (this) and a val/ of one image per class
        for c in range(len(FASHION_MNIST_CLASSES)):
            (root.parent / "val" / f"{c}").mkdir(parents=True, exist_ok=True)
            (root.parent / "val" / f"{c}" / f"{c}.jpg").write_bytes(images[c])


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
        self.files = sorted(root.glob(f"*/*.{IMAGE_EXT}"))
        self.labels = [int(f.parent.name) for f in self.files]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        with Image.open(self.files[i]) as im:
            return self.transform(im.convert("RGB" if PHOTOS else "L")), self.labels[i]


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


def write_effzoo(root: Path, data: str, encode: str, per_shard: int) -> None:
    """`effzoo shard`: the Fashion-MNIST files at `data`, or with --photos the image folder `data`."""
    from effzoo.data import FashionMNISTSource, create_source, write_shards

    source = create_source(data) if PHOTOS else FashionMNISTSource(data_dir=data)
    write_shards(source, root, encode=encode, shard_samples=per_shard)


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
    global PHOTOS, IMAGE_EXT
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/shard-formats")
    p.add_argument("--limit", type=int, default=60000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--per-shard", type=int, default=5000, help="WebDataset samples per tar")
    p.add_argument("--chunk-bytes", default="8MB", help="LitData chunk size")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--photos", type=int, default=0, help="N synthesized JPEG photos at 224 px instead of Fashion-MNIST")
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--out")
    args = p.parse_args()
    PHOTOS, IMAGE_EXT = bool(args.photos), ("jpg" if args.photos else "png")
    work = Path(args.work) / ("photos" if PHOTOS else "")
    layouts, folders = photo_layouts(work, args) if PHOTOS else fashion_layouts(work, args)
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
    # LitData's `optimize` switches the process-wide start method to spawn; put Linux's default back so every
    # reader's workers start the same way (and see this module's settings, which spawned workers would not)
    multiprocessing.set_start_method("fork", force=True)
    rates: dict[str, list[float]] = {name: [] for name in layouts}
    for r in range(args.rounds):
        for name, (_, make_loader) in layouts.items():
            seen, seconds = one_epoch(make_loader())
            rates[name].append(seen / seconds)
            print(f"round {r + 1}: {name}: {seen} images in {seconds:.1f} s, {seen / seconds:.0f} images/s", flush=True)
    folder_name = next(iter(layouts))
    base = max(rates[folder_name])
    # this machine's speed drifts by ~25% between minutes: rounds interleave the layouts, and both the best and
    # the median round are reported, each against the folder's
    base_median = float(np.median(rates[folder_name]))
    print(f"\n{'layout':28} {'images/s best':>14} {'vs folder':>10} {'median':>8} {'vs folder':>10} {'size MB':>9}")
    rows = []
    for name in layouts:
        files = [f for f in (work / folders[name]).rglob("*") if f.is_file() and f.name != ".complete"]
        size = sum(f.stat().st_size for f in files) / 2**20
        best, median = max(rates[name]), float(np.median(rates[name]))
        rows.append({"layout": name, "images_per_s": round(best), "vs_folder": round(best / base, 2),
                     "median_images_per_s": round(median), "median_vs_folder": round(median / base_median, 2),
                     "rounds": [round(r) for r in rates[name]], "size_mb": round(size, 1),
                     "write_s": write_seconds.get(name)})
        print(f"{name:28} {best:14.0f} {best / base:10.2f} {median:8.0f} {median / base_median:10.2f} {size:9.1f}")
    if args.out:
        images = args.photos or min(args.limit, 60000)
        Path(args.out).write_text(json.dumps({"images": images, "photos": PHOTOS, "workers": args.workers,
                                              "per_shard": args.per_shard, "chunk_bytes": args.chunk_bytes,
                                              "rows": rows}, indent=2))


Layouts = dict[str, tuple[Callable[[], None], Callable[[], DataLoader]]]


def fashion_layouts(work: Path, args: argparse.Namespace) -> tuple[Layouts, dict[str, str]]:
    arrays = load_fashion_mnist_arrays(args.data_dir)
    images, labels = arrays["train_images"][: args.limit], arrays["train_labels"][: args.limit]
    layouts: Layouts = {}
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
    return layouts, folders


def photo_layouts(work: Path, args: argparse.Namespace) -> tuple[Layouts, dict[str, str]]:
    jpegs: list[bytes] | None = None
    labels = np.arange(args.photos) % 10

    def encoded() -> list[bytes]:
        nonlocal jpegs
        jpegs = jpegs or synthesize_photos(args.photos)[0]
        return jpegs

    def decoded() -> np.ndarray:
        return np.stack([np.asarray(Image.open(io.BytesIO(j)).convert("RGB").resize((400, 320))) for j in encoded()])

    layouts: Layouts = {
        "image folder (JPEG files)": (lambda: write_folder(work / "folder" / "train", encoded(), labels),
                                      lambda: folder_loader(work / "folder" / "train", args)),
        "WebDataset (JPEG)": (lambda: write_webdataset(work / "wds", encoded(), labels, "jpg", args.per_shard),
                              lambda: webdataset_loader(work / "wds", args, "jpg")),
        "LitData (JPEG)": (lambda: write_litdata(work / "lit", encoded(), labels, args.chunk_bytes),
                           lambda: litdata_loader(work / "lit", args, raw=False)),
        "effzoo shards (JPEG)": (lambda: write_effzoo(work / "effzoo", str(work / "folder"), "keep", args.per_shard),
                                 lambda: effzoo_loader(work / "effzoo", args)),
        "effzoo stream (JPEG)": (lambda: None, lambda: effzoo_stream_loader(work / "effzoo", args)),
        "in-memory arrays (ceiling)": (lambda: None, lambda: memory_loader(decoded(), labels, args)),
    }
    folders = {"image folder (JPEG files)": "folder/train", "WebDataset (JPEG)": "wds", "LitData (JPEG)": "lit",
               "effzoo shards (JPEG)": "effzoo", "effzoo stream (JPEG)": "effzoo", "in-memory arrays (ceiling)": "memory"}
    return layouts, folders


if __name__ == "__main__":
    main()

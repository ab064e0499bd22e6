"""`effzoo predict` on the 10,000 Fashion-MNIST test images written out as PNG files: its throughput, and
whether it answers what `effzoo evaluate` measures on the same model and split.

    python benchmarks/predict_fashion_mnist.py [--checkpoint ZOO_NAME_OR_RUN] [--data-dir DIR] [--limit N]
                                               [--batch-size 256] [--num-workers N] [--runtime torch|onnxruntime]

1. The test images (IDX order) become PNG files in a temporary folder (not timed).
2. `Predictor.predict_paths` runs over them: decoding and preprocessing in the loader workers, the
   BN-folded channels_last model (or the exported ONNX file) in the main process. Timed end to end,
   the number a user of `effzoo predict` gets.
3. `effzoo evaluate`'s path on the same split: the data module's test loader (the arrays, no files) and
   `evaluation.evaluate.predict` with the model as loaded.

Printed: images/s of both, top-1 of both against the labels, and on how many images their top-1 classes
agree. Exit code 1 when they disagree anywhere (preprocessing that differs from training's would show
here as a few percent of disagreement; BN folding alone moves logits by ~1e-6 relative).

Measured (2 CPU cores, alone, the shipped 16-epoch model, torch, batch 256, 1 loader worker): predict 500
images/s from the PNG files, evaluate 438 images/s from the arrays; top-1 93.43% both, the same class on
10,000 of 10,000 images.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from effzoo.artifacts.weights import load_checkpoint
from effzoo.data import load_fashion_mnist_arrays
from effzoo.data.fashion_mnist import FashionMNISTSource
from effzoo.evaluation.evaluate import datamodule_for, predict
from effzoo.evaluation.predict import Predictor

SHIPPED = "effzoo_efficientnet_phi-4_fashion-mnist_28px_16ep"  # 93.43% test top-1 (README)


def write_pngs(images, folder: Path) -> list[str]:
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{i:05d}.png"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=SHIPPED)
    ap.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX files (default: as `effzoo evaluate` finds them)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N test images (a smoke run)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--num-workers", type=int, default=None)
    ap.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch")
    args = ap.parse_args()

    source = FashionMNISTSource(data_dir=args.data_dir)
    arrays = load_fashion_mnist_arrays(source.folder())
    n = len(arrays["test_images"]) if args.limit is None else min(args.limit, len(arrays["test_images"]))
    labels = torch.as_tensor(arrays["test_labels"][:n])

    with tempfile.TemporaryDirectory(prefix="effzoo-predict-fmnist-") as tmp:
        start = time.perf_counter()
        paths = write_pngs(arrays["test_images"][:n], Path(tmp))
        print(f"wrote {n:,} PNG files in {time.perf_counter() - start:.1f} s")
        predictor = Predictor(args.checkpoint, device="cpu", runtime=args.runtime, top_k=1,
                              batch_size=args.batch_size, num_workers=args.num_workers)
        start = time.perf_counter()
        results = list(predictor.predict_paths(paths, progress="predict"))
        predict_s = time.perf_counter() - start
    errors = [r for r in results if r.error is not None]
    if errors:
        print(f"{len(errors)} files could not be read, e.g. {errors[0].path}: {errors[0].error}")
        return 1
    ours = torch.tensor([r.top_k[0][0] for r in results])

    model = load_checkpoint(args.checkpoint).eval()
    dm = datamodule_for(model, "fashion-mnist", data_dir=args.data_dir, batch_size=args.batch_size, num_workers=0)
    loader = dm.eval_dataloader("test", model.pretrained_cfg["test_input_size"][-1])
    start = time.perf_counter()
    logits, targets, _ = predict(model, _first(loader, n), channels_last=True, progress="evaluate")
    evaluate_s = time.perf_counter() - start
    theirs, targets = logits.argmax(1)[:n], targets[:n]
    if not torch.equal(targets, labels):
        print("the data module's test split is not the IDX file's order: cannot compare per image")
        return 1

    agree = int((ours == theirs).sum())
    print(f"checkpoint {args.checkpoint}: {n:,} test images, {predictor.image_size} px, "
          f"runtime {predictor.runtime}, batch {predictor.batch_size}, {predictor.num_workers} loader workers")
    print(f"effzoo predict (PNG files): {n / predict_s:8,.0f} images/s, top-1 {100 * (ours == labels).float().mean():.2f}%")
    print(f"effzoo evaluate (arrays):   {n / evaluate_s:8,.0f} images/s, top-1 {100 * (theirs == labels).float().mean():.2f}%")
    print(f"same top-1 class on {agree:,} of {n:,} images")
    return 0 if agree == n else 1


def _first(loader, n: int):
    """The loader's batches up to image n (a --limit run stops early)."""
    seen = 0
    for x, y in loader:
        if seen >= n:
            break
        yield x, y
        seen += len(y)


if __name__ == "__main__":
    sys.exit(main())

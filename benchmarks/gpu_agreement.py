"""Do shipped checkpoints predict the same on a CUDA GPU as on the CPU? And where does a small model's GPU step go?

    python benchmarks/gpu_agreement.py [--data-dir FASHION_MNIST_DIR] [--batches 8] [--json FILE]

For each shipped checkpoint whose data is here (digits always; Fashion-MNIST with --data-dir or
the Debian package), runs `--batches` test batches through the model on the CPU (float32, the
reference) and on the GPU with TF32 convolutions on (torch's default for cuDNN) and off, and
prints the largest logit difference relative to the logits' scale and the share of equal argmaxes.
TF32 keeps 10 mantissa bits, so ~1e-3 relative per layer is expected; a wrong kernel or layout
would show as disagreeing predictions.

Then the Fashion-MNIST recipe (configs/fashion_mnist.yaml: phi -4, 28 px, batch 64): seconds per batch of its
training data loader alone against one GPU training step alone (forward, loss, backward, AdamW),
to say which one bounds an epoch on a GPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import effzoo
from effzoo.evaluation.evaluate import datamodule_for

ROOT = Path(__file__).resolve().parents[1]


def agreement(folder: Path, data: str, data_dir: str | None, batches: int) -> dict:
    cpu = effzoo.load_checkpoint(folder).eval()
    gpu = effzoo.load_checkpoint(folder).cuda().eval()
    dm = datamodule_for(cpu, data, data_dir=data_dir, batch_size=256, num_workers=4)
    dm.setup("test")
    res = cpu.pretrained_cfg["test_input_size"][-1]
    loader = dm.eval_dataloader("test", res)
    out = {"checkpoint": folder.name, "resolution": res}
    refs, inputs = [], []
    with torch.no_grad():
        for i, (x, _) in enumerate(loader):
            if i == batches:
                break
            inputs.append(x)
            refs.append(cpu(x))
        ref = torch.cat(refs)
        scale = ref.abs().max().item()
        before = torch.backends.cudnn.allow_tf32
        try:
            for tf32 in (True, False):
                torch.backends.cudnn.allow_tf32 = tf32
                got = torch.cat([gpu(x.cuda()).float().cpu() for x in inputs])
                out[f"tf32={tf32}"] = {"max_abs_diff": (got - ref).abs().max().item(),
                                       "max_diff_over_logit_scale": (got - ref).abs().max().item() / scale,
                                       "argmax_agreement": (got.argmax(1) == ref.argmax(1)).float().mean().item()}
        finally:
            torch.backends.cudnn.allow_tf32 = before
    out["images"], out["logit_scale"] = len(ref), scale
    return out


def step_breakdown(data_dir: str | None, steps: int = 200) -> dict:
    """Seconds per batch: the recipe's train loader alone, and a GPU training step of its model alone.

    Both come from `configs/fashion_mnist.yaml` as `effzoo train` builds them. The step loop syncs only
    at its ends, so the host queues kernels ahead as in training.
    """
    from effzoo.training.config import from_dict, load_yaml
    from effzoo.training.run import build

    _, dm, module = build(from_dict(dict(load_yaml(ROOT / "configs" / "fashion_mnist.yaml"), data_dir=data_dir)))
    dm.setup("fit")
    loader = dm.train_dataloader()
    it = iter(loader)
    x, y = next(it)  # worker start-up is once per epoch, not per batch
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    loader_s = (time.perf_counter() - start) / steps

    model = module.model.cuda().train()  # channels_last already, as the recipe asks
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = x.cuda().contiguous(memory_format=torch.channels_last), y.cuda()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(10):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    step_s = (time.perf_counter() - start) / steps
    return {"loader_s_per_batch": loader_s, "gpu_step_s": step_s, "num_workers": loader.num_workers,
            "batch_size": len(x), "steps_per_epoch": len(loader)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("gpu_agreement.py needs a CUDA GPU; none is visible (torch.cuda.is_available() is False)")
        return 2
    fmnist = args.data_dir or "/usr/share/datasets/fashion-mnist"
    have_fmnist = Path(fmnist).is_dir()
    index = json.loads((ROOT / "checkpoints" / "index.json").read_text())["models"]
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "checkpoints": []}
    for entry in index.values():
        if entry["dataset"] == "fashion-mnist" and not have_fmnist:
            continue
        data_dir = fmnist if entry["dataset"] == "fashion-mnist" else None
        row = agreement(ROOT / "checkpoints" / entry["folder"], entry["dataset"], data_dir, args.batches)
        report["checkpoints"].append(row)
        print(f"{row['checkpoint']:58s} {row['images']:5d} images, logits up to {row['logit_scale']:7.1f}: " + "; ".join(
            f"{k} max diff {v['max_abs_diff']:.1e} ({v['max_diff_over_logit_scale']:.1e} of scale), "
            f"argmax agree {100 * v['argmax_agreement']:.2f}%" for k, v in row.items() if k.startswith("tf32")))
    if have_fmnist:
        report["fmnist_step"] = s = step_breakdown(fmnist)
        print(f"fashion-mnist recipe, batch {s['batch_size']}: loader {1e3 * s['loader_s_per_batch']:.1f} ms/batch "
              f"({s['num_workers']} workers), GPU step {1e3 * s['gpu_step_s']:.1f} ms; "
              f"{s['steps_per_epoch']} steps/epoch")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

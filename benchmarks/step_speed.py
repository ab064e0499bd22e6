"""Training-step images/s of the Fashion-MNIST recipe's model at each progressive size, and of an
EfficientNetV2 (Fused-MBConv) model of about the same MACs, on this machine.

    python benchmarks/step_speed.py [--sizes 16,20,24,28] [--v2-phi -8] [--batch-size 64] [--rounds 3] [--out FILE.json]

What it answers: how much of an epoch progressive learning saves at each stage size (an epoch's cost is not
proportional to pixels: per-step overheads stay), and whether Fused-MBConv is faster per MAC here (issue #18).
One process, rounds interleaved, channels_last and the optimizer step included, as `effzoo train` runs them;
grayscale 1-channel input, small_input (stride 8), 10 classes. Run alone.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from effzoo.evaluation.benchmark import interleaved_timings, train_step
from effzoo.models import create_model, model_info


def runner(name: str, phi: float, size: int, batch_size: int):
    model = create_model(name, phi=phi, num_classes=10, in_chans=1, small_input=True).train()
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch_size, 1, size, size).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,))
    macs = model_info(model, (1, size, size))["macs"]
    return train_step(model, x, y), macs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="16,20,24,28")
    p.add_argument("--phi", type=float, default=-4, help="EfficientNet phi (the recipe's -4)")
    p.add_argument("--v2-phi", type=float, default=-8, help="EfficientNetV2 phi (-8: 38.7 M MACs at 28 px, vs 30.8 M)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--out")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    runners, macs = {}, {}
    for size in sizes:
        runners[f"efficientnet phi={args.phi:g} {size}px"], macs[f"efficientnet phi={args.phi:g} {size}px"] = \
            runner("efficientnet", args.phi, size, args.batch_size)
    v2 = f"efficientnetv2 phi={args.v2_phi:g} {sizes[-1]}px"
    runners[v2], macs[v2] = runner("efficientnetv2", args.v2_phi, sizes[-1], args.batch_size)
    timings = interleaved_timings(runners, warmup=3, iters=args.iters, repeats=args.rounds, dev=torch.device("cpu"),
                                  log=print, what="train step")
    rows = []
    for key, (seconds, _) in timings.items():
        per_batch = statistics.median(seconds)
        rows.append({"model": key, "macs_m": round(macs[key] / 1e6, 2), "images_per_s": round(args.batch_size / per_batch, 1),
                     "ms_per_batch": round(1000 * per_batch, 1)})
    full = rows[len(sizes) - 1]
    print(f"{'model':36} {'MACs (M)':>9} {'img/s':>8} {'ms/batch':>9} {'time vs full':>12} {'img/s per GMAC':>15}")
    for r in rows:
        r["time_vs_full_size"] = round(full["images_per_s"] / r["images_per_s"], 3)
        r["images_per_s_per_gmac"] = round(r["images_per_s"] * r["macs_m"] / 1e3, 2)
        print(f"{r['model']:36} {r['macs_m']:9.1f} {r['images_per_s']:8.1f} {r['ms_per_batch']:9.1f} "
              f"{r['time_vs_full_size']:12.3f} {r['images_per_s_per_gmac']:15.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"batch_size": args.batch_size, "threads": torch.get_num_threads(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()

"""Our EfficientNet-B0..B7 next to the paper's Table 2 and timm's models of the same name.

    python benchmarks/builder_table.py [--json FILE]

MACs are counted with torch.utils.flop_counter (FLOPs / 2) at each model's native resolution,
on the meta device (no memory, no compute). The paper rounds its "FLOPS" (= MACs): B4/B5 differ
by 4-5% from every implementation's count, which is why tests compare with timm, not the paper.
Also prints compound-scaled `efficientnet` + phi for phi = 0..7 next to the hand-set presets.
"""

from __future__ import annotations

import argparse
import json

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import effzoo

PAPER = {  # Table 2: params (M), FLOPs (B), ICML top-1
    "efficientnet_b0": (5.3, 0.39, 76.3), "efficientnet_b1": (7.8, 0.70, 78.8), "efficientnet_b2": (9.2, 1.0, 79.8),
    "efficientnet_b3": (12, 1.8, 81.1), "efficientnet_b4": (19, 4.2, 82.6), "efficientnet_b5": (30, 9.9, 83.3),
    "efficientnet_b6": (43, 19, 84.0), "efficientnet_b7": (66, 37, 84.4),
}


def count(model: torch.nn.Module, size: tuple[int, int, int]) -> tuple[int, float]:
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, *size, device="meta"))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() / 2e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    rows = []
    print(f"{'model':16} {'res':>4} {'params':>12} {'timm params':>12} {'paper M':>8} "
          f"{'GMACs':>8} {'timm GMACs':>10} {'paper B':>8} {'vs paper':>8}")
    for name, (p_params, p_flops, _) in PAPER.items():
        with torch.device("meta"):
            ours, ref = effzoo.create_model(name), timm.create_model(name)
        size = ours.pretrained_cfg["input_size"]
        (params, macs), (t_params, t_macs) = count(ours, size), count(ref, size)
        rows.append(dict(model=name, resolution=size[-1], params=params, timm_params=t_params, paper_params_m=p_params,
                         gmacs=macs, timm_gmacs=t_macs, paper_gflops=p_flops))
        print(f"{name:16} {size[-1]:4d} {params:12,d} {t_params:12,d} {p_params:8} "
              f"{macs:8.3f} {t_macs:10.3f} {p_flops:8} {macs / p_flops - 1:+8.1%}")
    print("\nCompound scaling by the formula (alpha, beta, gamma = 1.2, 1.1, 1.15) vs the hand-set presets:")
    print(f"{'phi':>3} {'res':>4} {'depth':>6} {'width':>6} {'params':>12} {'GMACs':>8} {'x B0':>6} | {'preset':16} {'res':>4} {'GMACs':>8}")
    base = None
    for phi in range(8):
        with torch.device("meta"):
            model = effzoo.create_model("efficientnet", phi=phi)
            preset = effzoo.create_model(f"efficientnet_b{phi}")
        s = model.pretrained_cfg["scaling"]
        params, macs = count(model, model.pretrained_cfg["input_size"])
        _, p_macs = count(preset, preset.pretrained_cfg["input_size"])
        base = base or macs
        rows.append(dict(model=f"efficientnet phi={phi}", resolution=s["input_resolution"], depth=s["depth"],
                         width=s["width"], params=params, gmacs=macs))
        print(f"{phi:3d} {s['input_resolution']:4d} {s['depth']:6.3f} {s['width']:6.3f} {params:12,d} {macs:8.3f} "
              f"{macs / base:6.2f} | efficientnet_b{phi:<3} {preset.pretrained_cfg['input_size'][-1]:4d} {p_macs:8.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

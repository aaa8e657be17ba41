"""Grad-CAM cost vs its baseline on the same batches (ratio; issue: at most 1.5x).

Baseline: the same model in eval mode, the same batches, a forward pass and a backward of the
summed target logits to the parameters, no optimiser step. CAM: `fer.explain.cam.compute_cams`.

    .venv/bin/python bench/cam_cost.py [--n 1000] [--size 64] [--batch 128] [--method gradcam]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

import torch

from fer.explain.cam import compute_cams
from fer.models.backbones import small_vgg
from fer.models.init import glorot_


def batches(n: int, size: int, batch: int, classes: int) -> list[dict]:
    """Fixed random batches (the cost does not depend on pixel content)."""
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(0, n, batch):
        b = min(batch, n - i)
        out.append(
            {
                "image": torch.randn(b, 1, size, size, generator=g),
                "label": torch.randint(0, classes, (b,), generator=g),
                "index": torch.arange(i, i + b),
                "mask": torch.zeros(b, 3, size, size, dtype=torch.uint8),
            }
        )
    return out


def baseline(net: torch.nn.Module, data: list[dict]) -> None:
    """Forward + backward of the summed target logits to the parameters, eval mode."""
    net.eval()
    for b in data:
        net.zero_grad(set_to_none=True)
        logits = net(b["image"])
        logits.gather(1, b["label"][:, None]).sum().backward()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--method", default="gradcam")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    torch.manual_seed(0)
    net = glorot_(small_vgg(7, input_size=args.size))
    data = batches(args.n, args.size, args.batch, 7)
    timings = {"baseline": [], "cam": []}
    for _ in range(args.repeats):  # interleaved, so drift hits both alike
        t = time.perf_counter()
        baseline(net, data)
        timings["baseline"].append(time.perf_counter() - t)
        t = time.perf_counter()
        compute_cams(net, data, method=args.method)
        timings["cam"].append(time.perf_counter() - t)
    base, cam = min(timings["baseline"]), min(timings["cam"])
    result = {
        "model": "small_vgg",
        "size": args.size,
        "n": args.n,
        "batch": args.batch,
        "method": args.method,
        "baseline_s": round(base, 2),
        "cam_s": round(cam, 2),
        "ratio": round(cam / base, 3),
        "cam_images_per_s": round(args.n / cam, 1),
    }
    print(f"{'baseline s':>10} {'cam s':>8} {'ratio':>6} {'cam img/s':>9}")
    print(f"{base:>10.2f} {cam:>8.2f} {cam / base:>6.2f} {args.n / cam:>9.1f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cam_cost.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Preprocessing throughput (faces/s) for each method, 1 and N worker processes.

Input: jittered copies of scikit-image's `astronaut` photo (a real face, shipped with the
package), written as JPEGs, so detection, decoding and the cache write are all measured.

    .venv/bin/python bench/preprocess.py [--n 200] [--size 224] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: bench/x.py

import cv2
import numpy as np
from skimage import data as skdata

from fer.data.manifest import Manifest
from fer.data.preprocess import Settings, load_faces


def make_images(folder: Path, n: int, seed: int = 0) -> Manifest:
    """`n` JPEGs of the astronaut, randomly shifted, scaled and rotated a little."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    base = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    rows = []
    for i in range(n):
        angle, scale = rng.uniform(-8, 8), rng.uniform(0.85, 1.1)
        m = cv2.getRotationMatrix2D((256, 256), angle, scale)
        m[:, 2] += rng.uniform(-20, 20, 2)
        img = cv2.warpAffine(base, m, (512, 512), borderMode=cv2.BORDER_REFLECT)
        path = folder / f"img{i:04d}.jpg"
        if not cv2.imwrite(str(path), img):
            raise OSError(f"could not write {path}")
        rows.append(
            {"path": str(path), "label": "happiness", "subject": "astronaut", "dataset": "bench"}
        )
    return Manifest.from_records(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="images per measurement")
    ap.add_argument("--size", type=int, default=224, help="crop size")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--methods", nargs="+", default=["landmarks", "haar", "none"])
    ap.add_argument("--out", default="bench/results", help="folder for preprocess.json")
    args = ap.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_images(Path(tmp) / "img", args.n)
        for method in args.methods:
            for workers in args.workers:
                cache = Path(tmp) / f"cache-{method}-{workers}"
                t0 = time.perf_counter()
                faces = load_faces(
                    manifest,
                    Settings(method=method, size=args.size),
                    cache,
                    workers=workers,
                    progress=False,
                )
                dt = time.perf_counter() - t0
                t1 = time.perf_counter()
                load_faces(
                    manifest,
                    Settings(method=method, size=args.size),
                    cache,
                    workers=workers,
                    progress=False,
                )
                hit = time.perf_counter() - t1
                usable = int((faces.frame["excluded"] == "").sum())
                results.append(
                    {
                        "method": method,
                        "workers": workers,
                        "images": args.n,
                        "faces_per_s": round(args.n / dt, 1),
                        "seconds": round(dt, 2),
                        "usable": usable,
                        "cache_hit_s": round(hit, 3),
                    }
                )
    print(
        f"{'method':<10} {'workers':>7} {'faces/s':>9} {'seconds':>8} {'usable':>7} "
        f"{'cache hit s':>11}"
    )
    for r in results:
        print(
            f"{r['method']:<10} {r['workers']:>7} {r['faces_per_s']:>9} {r['seconds']:>8} "
            f"{r['usable']:>4}/{r['images']:<3} {r['cache_hit_s']:>10}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "preprocess.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out / 'preprocess.json'}")


if __name__ == "__main__":
    main()

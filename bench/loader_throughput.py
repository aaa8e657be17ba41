"""Who is the bottleneck: the data path or the model? Images/s of each, same config, same run.

loader: `FERDataModule.train_dataloader()` of the composed config (the synthetic default:
cached uint8 faces -> albumentations augmentation -> collate -> `.to(device)`), first batch
(worker start-up) excluded. model: training images/s of the config's model at its batch size
and the trainer's precision on a resident random batch (`bench/train_throughput.py`).
end-to-end: the loader feeding those training steps in one loop (with num_workers=0 the two
run one after the other in the same process, so 1/e2e ~ 1/loader + 1/model).
ratio = loader / model: >= 1 means the loader is not the bottleneck.
--on-device: `datamodule.on_device=true`: the loader yields index batches and the images are
built on `--device` in batches with torch ops (fer/data/on_device.py); on the CPU that is the
cost of the batched torch augmentation itself.

Configs (train.yaml overrides; init=glorot: the measured cost does not depend on the init):
  small_vgg              the quick default (small_vgg 48x48 grey on synthetic_lab)
  arabian2022_synthetic  study A's synthetic twin (experiment=arabian2022_synthetic)

    .venv/bin/python bench/loader_throughput.py [--configs small_vgg arabian2022_synthetic]
        [--workers 0 2] [--device cpu|cuda] [--on-device] [--override model=small_vgg_cbam ...]
    on a GPU: --device cuda --override trainer=gpu   (bf16-mixed, 4 workers, pinned memory)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere
sys.path.insert(0, str(Path(__file__).resolve().parent))  # train_throughput beside it
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch
from train_throughput import measure_training, train_step_fn

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "small_vgg": ["init=glorot"],
    "arabian2022_synthetic": ["experiment=arabian2022_synthetic", "init=glorot"],
}


def compose_config(overrides: list[str], cache_dir: str) -> Any:
    """train.yaml with `overrides`, no logger, the given cache (synthetic faces render once)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import fer.naming  # noqa: F401  (the run-name resolver the config refers to)

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose(
            "train", overrides=["logger=none", f"paths.cache_dir={cache_dir}", *overrides]
        )


def precision_of(cfg: Any) -> str:
    return "bf16" if str(cfg.trainer.get("precision") or "32").startswith("bf16") else "fp32"


def optimizer_of(cfg: Any) -> str:
    return "sgd" if str(cfg.optimizer._target_).endswith("SGD") else "adam"


def batches(loader: Any, sampler: Any) -> Any:
    """Batches forever, epoch after epoch (the sampler reshuffles per epoch, as in training)."""
    epoch = 0
    while True:
        yield from loader
        epoch += 1
        sampler.set_epoch(epoch)


def on_device(dm: Any, b: dict, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A train batch's images and labels on `device`; index batches (datamodule.on_device)
    move their indices and have the images built there, as Lightning's hook does."""
    if "image" not in b:
        b = dm.on_after_batch_transfer({k: v.to(device) for k, v in b.items()}, 0)
        return b["image"], b["label"]
    pin = bool(dm.pin_memory)
    return b["image"].to(device, non_blocking=pin), b["label"].to(device, non_blocking=pin)


def loader_rate(dm: Any, device: str, min_time: float) -> tuple[float, int]:
    """(images/s, batches timed) of the train loader, each batch moved to `device`."""
    it = batches(dm.train_dataloader(), dm.train_sampler)
    on_device(dm, next(it), device)  # worker start-up, first fetch (or upload): warm-up
    n = images = 0
    t0 = time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < min_time:
        x, _ = on_device(dm, next(it), device)
        images += len(x)
        n += 1
    if device == "cuda":
        torch.cuda.synchronize()
    return images / (time.perf_counter() - t0), n


def end_to_end_rate(dm: Any, cfg: Any, device: str, min_time: float) -> float:
    """Images/s of training fed by the real loader (what a run reaches, without Lightning)."""
    from train_throughput import make_optimizer

    from fer.models.build import build_model

    torch.manual_seed(0)
    net = build_model(cfg.model, {"name": "glorot"}, len(cfg.classes)).to(device).train()
    opt = make_optimizer(optimizer_of(cfg), net.parameters())
    step = train_step_fn(net, opt, device, precision_of(cfg), channels_last=False)
    it = batches(dm.train_dataloader(), dm.train_sampler)
    for _ in range(2):  # warm-up: worker start, first steps
        step(*on_device(dm, next(it), device))
    n = images = 0
    t0 = time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < min_time:
        x, y = on_device(dm, next(it), device)
        step(x, y)
        images += len(y)
        n += 1
    if device == "cuda":
        torch.cuda.synchronize()
    return images / (time.perf_counter() - t0)


def measure(
    name: str,
    overrides: list[str],
    workers: int | None,
    device: str,
    cache: str,
    min_time: float,
    e2e: bool,
    repeats: int = 1,
    device_data: bool = False,
) -> dict[str, Any]:
    """One config: loader, model and end-to-end images/s (each the best of `repeats`)."""
    from omegaconf import OmegaConf, open_dict

    from fer.train import make_datamodule

    cfg = compose_config(overrides, cache)
    with open_dict(cfg):
        if workers is not None:
            cfg.datamodule.num_workers = workers
        if device == "cuda":
            cfg.datamodule.pin_memory = True
        cfg.datamodule.on_device = device_data
    dm = make_datamodule(cfg)
    t = time.perf_counter()
    dm.setup("fit")
    setup_s = time.perf_counter() - t
    loader_ips, n = max(loader_rate(dm, device, min_time) for _ in range(max(1, repeats)))
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    model = measure_training(
        model_cfg,
        device=device,
        batch=int(cfg.datamodule.batch_size),
        precision=precision_of(cfg),
        optimizer=optimizer_of(cfg),
        classes=len(cfg.classes),
        min_time=min_time,
        repeats=repeats,
    )
    row = {
        "config": name,
        "overrides": overrides,
        "model": model_cfg["name"],
        "size": int(model_cfg["input"]["size"]),
        "channels": int(model_cfg["input"]["channels"]),
        "batch": int(cfg.datamodule.batch_size),
        "num_workers": 0 if device_data else int(cfg.datamodule.num_workers),
        "on_device": device_data,
        "device": device,
        "threads": torch.get_num_threads(),
        "precision": precision_of(cfg),
        "train_images": len(dm.train_set),
        "setup_s": round(setup_s, 2),
        "loader_images_per_s": round(loader_ips, 1),
        "loader_batches": n,
        "model_images_per_s": model["images_per_s"],
        "ratio": round(loader_ips / model["images_per_s"], 2),
        "end_to_end_images_per_s": round(
            max(end_to_end_rate(dm, cfg, device, min_time) for _ in range(max(1, repeats))), 1
        )
        if e2e
        else None,
    }
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--override", nargs="*", default=[], help="extra train.yaml overrides")
    ap.add_argument("--workers", type=int, nargs="+", default=[None], help="default: config's")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--cache", default="cache", help="paths.cache_dir (synthetic faces)")
    ap.add_argument("--min-time", type=float, default=3.0, help="seconds timed per measurement")
    ap.add_argument("--repeats", type=int, default=1, help="timed windows each (fastest)")
    ap.add_argument("--no-e2e", action="store_true", help="skip the end-to-end measurement")
    ap.add_argument(
        "--on-device", action="store_true", help="datamodule.on_device=true (augment on --device)"
    )
    ap.add_argument("--out", default="bench/results", help="folder for loader_throughput.json")
    args = ap.parse_args()

    rows = []
    print(
        f"{'config':<22} {'model':<15} {'size':>4} {'batch':>5} {'workers':>7} {'prec':<4} "
        f"{'loader img/s':>12} {'model img/s':>11} {'ratio':>6} {'e2e img/s':>9}"
    )
    for name in args.configs:
        for workers in args.workers:
            r = measure(
                name,
                CONFIGS[name] + list(args.override),
                workers,
                args.device,
                args.cache,
                args.min_time,
                not args.no_e2e,
                args.repeats,
                args.on_device,
            )
            rows.append(r)
            e2e = r["end_to_end_images_per_s"]
            print(
                f"{name:<22} {r['model']:<15} {r['size']:>4} {r['batch']:>5} "
                f"{'device' if r['on_device'] else r['num_workers']:>7} {r['precision']:<4} "
                f"{r['loader_images_per_s']:>12.1f} "
                f"{r['model_images_per_s']:>11.1f} {r['ratio']:>6.2f} "
                f"{'' if e2e is None else f'{e2e:.1f}':>9}",
                flush=True,
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "loader_throughput.json").write_text(json.dumps(rows, indent=2))
    print(f"wrote {out / 'loader_throughput.json'}")


if __name__ == "__main__":
    main()

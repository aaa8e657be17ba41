"""Training throughput (images/s, optimiser step included, warm-up excluded) per model.

For each model (conf/model/<name>.yaml, built by `fer.models.build.build_model` with Glorot
init) at its study's input size (or --size), on CPU and CUDA (when present), fp32 vs
bf16-mixed (`torch.autocast`), channels-last off/on, optionally `torch.compile`d. The batch
is random data already on the device: the data path is `bench/loader_throughput.py`'s.
The optimiser is each study's (Adam for small_vgg*, SGD momentum 0.9 for vgg16*; --optimizer).

FLOPs per image: the forward counted by `torch.utils.flop_counter.FlopCounterMode` (2 FLOP per
multiply-add, convs and matmuls); training = 3 x forward (forward + backward to inputs and
weights). On CUDA, MFU = images/s x training FLOPs / the device's dense bf16 peak (table below,
or --peak-tflops) — the same peak for fp32 rows, so those show how far fp32 is from it.

Writes bench/results/train_throughput.json (merged with what is there: a GPU run adds to the
CPU rows): `runs` holds every measured row; `throughput` maps
"<device name>|<model>|<size>|<precision>" to the fastest row without torch.compile (what
train.py runs) — the input of the grid cost model (`fer/costs.py`).

    .venv/bin/python bench/train_throughput.py [--models small_vgg vgg16] [--devices cpu cuda]
        [--precision fp32 bf16] [--channels-last off on] [--compile] [--size 48] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
MODELS = ["small_vgg", "small_vgg_se", "small_vgg_cbam", "vgg16", "vgg16_se", "vgg16_cbam"]
#: Dense bf16 peak TFLOP/s by device-name substring (first match wins: specific names first).
PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H200", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10", 125.0),
]


def device_name(device: str) -> str:
    """A stable name for the throughput key: the GPU's name, or the CPU model."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    model = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {model}"


def peak_tflops(name: str, override: float | None) -> float | None:
    """Dense bf16 peak of a GPU by name (None when unknown or on CPU)."""
    if override:
        return override
    for key, peak in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            return peak
    return None


def model_config(name: str, size: int | None = None) -> dict[str, Any]:
    """conf/model/<name>.yaml composed by Hydra (its defaults applied), input size overridden."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}", "logger=none"])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    if size:
        model["input"]["size"] = int(size)
    return model


def build(model_cfg: dict[str, Any], classes: int) -> nn.Module:
    """The model as training builds it (Glorot init; attention inserted)."""
    from fer.models.build import build_model

    return build_model(model_cfg, {"name": "glorot"}, classes)


def forward_flops(net: nn.Module, channels: int, size: int) -> int:
    """FLOPs of one image's forward pass (FlopCounterMode: convs, matmuls; 2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    was = net.training
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, channels, size, size, device=next(net.parameters()).device))
    net.train(was)
    return int(counter.get_total_flops())


def make_optimizer(name: str, params: Any) -> torch.optim.Optimizer:
    """The studies' optimisers: Adam 3e-4 (study B twin) or SGD 1e-4 momentum 0.9 (study A)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=3e-4)
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    raise SystemExit(f"--optimizer {name}: allowed adam | sgd")


def default_optimizer(model: str) -> str:
    return "sgd" if model.startswith("vgg16") else "adam"


def train_step_fn(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    device: str,
    precision: str,
    channels_last: bool,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """One training step (forward, loss, backward, optimiser step) as train.py takes it."""
    amp = precision == "bf16"

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def timed(
    step: Callable[[], Any], sync: Callable[[], None], warmup: int, min_time: float, min_steps: int
) -> tuple[int, float]:
    """Steps and seconds after `warmup` untimed steps: at least `min_steps` and `min_time`.

    The stop condition reads the host clock without synchronising (a per-step sync would stall
    the CUDA queue); the count is closed by one sync, so the time covers every step run.
    """
    for _ in range(warmup):
        step()
    sync()
    n, t0 = 0, time.perf_counter()
    while n < min_steps or time.perf_counter() - t0 < min_time:
        step()
        n += 1
    sync()
    return n, time.perf_counter() - t0


def measure_training(
    model_cfg: dict[str, Any],
    *,
    device: str = "cpu",
    batch: int = 32,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    optimizer: str = "adam",
    classes: int = 6,
    warmup: int = 5,  # the first ~3 CPU steps build oneDNN primitives (~1 s each)
    min_time: float = 3.0,
    min_steps: int = 3,
    repeats: int = 1,
) -> dict[str, Any]:
    """Training images/s of one model and setting (random batch resident on `device`); with
    `repeats` > 1 the fastest of that many timed windows (a shared machine's noise only ever
    slows a window down)."""
    torch.manual_seed(0)
    size, channels = int(model_cfg["input"]["size"]), int(model_cfg["input"]["channels"])
    net = build(model_cfg, classes)
    params = sum(p.numel() for p in net.parameters())
    flops = forward_flops(net, channels, size)
    net = net.to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.train()
    opt = make_optimizer(optimizer, net.parameters())
    model = torch.compile(net) if compile else net
    step = train_step_fn(model, opt, device, precision, channels_last)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, size, size, generator=g).to(device)
    y = torch.randint(0, classes, (batch,), generator=g).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    warm = warmup + (3 if compile else 0)
    windows = [
        timed(lambda: step(x, y), sync, warm if i == 0 else 0, min_time, min_steps)
        for i in range(max(1, repeats))
    ]
    n, dt = min(windows, key=lambda w: w[1] / w[0])
    ips = n * batch / dt
    return {
        "model": model_cfg["name"],
        "size": size,
        "channels": channels,
        "batch": batch,
        "precision": precision,
        "channels_last": channels_last,
        "compile": compile,
        "optimizer": optimizer,
        "params": params,
        "flops_fwd_per_image": flops,
        "flops_train_per_image": 3 * flops,
        "steps": n,
        "seconds": round(dt, 3),
        "step_ms": round(1000 * dt / n, 2),
        "images_per_s": round(ips, 1),
        "peak_device_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if device == "cuda"
        else None,
    }


def key(row: dict[str, Any]) -> str:
    """The cost model's key: device name, model, input size, precision."""
    return f"{row['device']}|{row['model']}|{row['size']}|{row['precision']}"


def variant(row: dict[str, Any]) -> tuple:
    """Everything that makes a row a distinct measurement (a re-run replaces it)."""
    return (key(row), row["batch"], row["channels_last"], row["compile"], row["optimizer"])


def merge(path: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Earlier rows of the file plus `rows` (same variant: replaced), and the key table."""
    old: list[dict[str, Any]] = []
    if path.exists():
        try:
            old = json.loads(path.read_text()).get("runs", [])
        except (json.JSONDecodeError, AttributeError):
            old = []
    new = {variant(r) for r in rows}
    runs = [r for r in old if variant(r) not in new] + rows
    best: dict[str, dict[str, Any]] = {}
    for r in runs:
        if r["compile"]:  # train.py does not compile: keep the key table to what it runs
            continue
        k = key(r)
        if k not in best or r["images_per_s"] > best[k]["images_per_s"]:
            best[k] = {
                f: r[f]
                for f in (
                    "device",
                    "kind",
                    "model",
                    "size",
                    "precision",
                    "images_per_s",
                    "batch",
                    "channels_last",
                    "threads",
                    "flops_train_per_image",
                    "params",
                )
            }
    return {
        "note": "training images/s, optimiser step included, warm-up excluded; "
        "`throughput`: the fastest non-compiled row per device|model|size|precision "
        "(bench/train_throughput.py; read by fer/costs.py)",
        "throughput": dict(sorted(best.items())),
        "runs": runs,
    }


def _fmt_flops(f: float) -> str:
    return f"{f / 1e9:.2f}G"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", nargs="+", default=MODELS, help="conf/model names")
    ap.add_argument("--size", type=int, default=None, help="input size for every model")
    ap.add_argument("--devices", nargs="+", default=None, help="cpu cuda (default: both if any)")
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--channels-last", nargs="+", default=["off", "on"], choices=["off", "on"])
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile")
    ap.add_argument("--batch", type=int, default=None, help="default: cpu 32, cuda 256 (512 small)")
    ap.add_argument("--optimizer", default=None, help="adam | sgd (default: the model's study)")
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--min-time", type=float, default=3.0, help="seconds timed per row")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps per row")
    ap.add_argument("--repeats", type=int, default=1, help="timed windows per row (fastest)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak (bf16 dense)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--out", default="bench/results", help="folder for train_throughput.json")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit("--devices cuda: no CUDA device is visible")
    if "cuda" in devices:
        torch.backends.cudnn.benchmark = True  # as trainer=gpu sets it
    rows = []
    header = (
        f"{'device':<26} {'model':<15} {'size':>4} {'batch':>5} {'prec':<4} {'cl':<3} "
        f"{'comp':<4} {'img/s':>9} {'step ms':>8} {'GFLOP/img':>9} {'MFU':>6}"
    )
    print(header)
    for device in devices:
        name = device_name(device)
        peak = peak_tflops(name, args.peak_tflops) if device == "cuda" else None
        for model in args.models:
            cfg = model_config(model, args.size)
            small = int(cfg["input"]["size"]) <= 64
            batch = args.batch or (32 if device == "cpu" else 512 if small else 256)
            for precision in args.precision:
                for cl in args.channels_last:
                    for comp in [False, True] if args.compile else [False]:
                        row = measure_training(
                            cfg,
                            device=device,
                            batch=batch,
                            precision=precision,
                            channels_last=cl == "on",
                            compile=comp,
                            optimizer=args.optimizer or default_optimizer(model),
                            classes=args.classes,
                            warmup=args.warmup,
                            min_time=args.min_time,
                            repeats=args.repeats,
                        )
                        mfu = (
                            row["images_per_s"] * row["flops_train_per_image"] / (peak * 1e12)
                            if peak
                            else None
                        )
                        row.update(
                            device=name,
                            kind=device,
                            threads=torch.get_num_threads() if device == "cpu" else None,
                            peak_tflops=peak,
                            mfu=round(mfu, 4) if mfu is not None else None,
                            torch=torch.__version__,
                        )
                        rows.append(row)
                        print(
                            f"{name[:26]:<26} {model:<15} {row['size']:>4} {batch:>5} "
                            f"{precision:<4} {cl:<3} {'yes' if comp else 'no':<4} "
                            f"{row['images_per_s']:>9.1f} {row['step_ms']:>8.1f} "
                            f"{_fmt_flops(row['flops_train_per_image']):>9} "
                            f"{'' if mfu is None else f'{100 * mfu:.1f}%':>6}",
                            flush=True,
                        )
                        if device == "cuda":
                            torch.cuda.empty_cache()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "train_throughput.json"
    merged = merge(path, rows)
    path.write_text(json.dumps(merged, indent=2))
    print(f"wrote {path} ({len(merged['runs'])} rows, {len(merged['throughput'])} keys)")


if __name__ == "__main__":
    main()

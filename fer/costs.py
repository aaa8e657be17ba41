"""What a grid will cost before it runs: time, disk and memory per run, stage and grid.

Pure functions over numbers (`RunSpec` -> `RunCost`), plus readers that turn a cell's resolved
config into a `RunSpec` and `sweep.py study=<name> sweep.dry=true`'s stages into a table.
Throughput comes from `bench/train_throughput.py`'s JSON (`throughput`: images/s keyed
"<device>|<model>|<size>|<precision>"); a model or size it lacks is scaled by training FLOPs
from the nearest measured one on the same device, and with no measurement on the device a
stated default (`DEFAULT_TFLOPS`) is used — the table says which.

Formulas (B batch, P parameters, A activation elements per image, s optimiser state slots
per parameter: Adam 2, SGD momentum 1, SGD 0; n_train, n_val, n_scored images; E epochs):
- time/run  = E·(n_train + EVAL_COST·n_val)/ips + EVAL_COST·(n_val + n_scored)/ips
  + RUN_OVERHEAD_S; ips = training images/s; EVAL_COST = 1/3 (a forward is ~1/3 of a
  training step). Evaluation (evaluate.py) per image: one forward for the scores plus two
  Grad-CAM passes (trained and randomised model, each ~ one training step) = 7/3 steps.
  E is `trainer.max_epochs`: with early stopping an upper bound.
- disk/run  = while running: (files + 1)·4P·(1 + s) — last.ckpt and best.ckpt each hold the
  optimiser state, +1 for the atomic write's temporary copy; kept: 4P (the reported
  checkpoint, weights only) or files·4P·(1 + s) with `train.keep_checkpoints=all`.
  Cache: once per dataset and crop size, n·size²·(3 + regions) bytes (RGB crop + one uint8
  mask per region, `fer.data.preprocess`).
- memory    = 4P (fp32 weights) + 4P (grads) + 4sP (optimiser) + 2P (bf16 weight copies under
  autocast) + B·A·b (b = 2 bf16, 4 fp32; A = input + every leaf module's output, what
  autograd keeps) + CUDA_CONTEXT_BYTES on a GPU; + the cached uint8 images with
  `data.on_device=true`. An upper bound: every parameter is counted as trained.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: A forward pass relative to a training step (forward + backward + step ~ 3 forwards).
EVAL_COST = 1.0 / 3.0
#: evaluate.py per image, in training steps: scores (1 forward) + 2 Grad-CAM passes.
EVALUATE_COST = EVAL_COST + 2.0
#: Per run: process start and imports (~7 s here), data module set-up, checkpoint writes.
RUN_OVERHEAD_S = 15.0
#: CUDA context + cuDNN workspace + allocator slack on a GPU.
CUDA_CONTEXT_BYTES = 1 << 30
#: Effective training TFLOP/s by (device kind, precision) when nothing is measured on the
#: device (the table says so): CPU ~ what small_vgg reaches on the 2-core development machine
#: (fp32 ~25 img/s, bf16 ~150 img/s at 1.1 GFLOP per image); CUDA ~ 30 % of an H100's dense
#: bf16 peak, and fp32 (TF32 convolutions) a third of that.
DEFAULT_TFLOPS = {
    ("cpu", "fp32"): 0.03,
    ("cpu", "bf16"): 0.15,
    ("cuda", "fp32"): 100.0,
    ("cuda", "bf16"): 300.0,
}
#: Optimiser state tensors per parameter.
OPTIMIZER_STATE = {"adam": 2, "adamw": 2, "sgd_momentum": 1, "sgd": 0}
#: ROI mask channels cached per face (fer.labels.REGIONS).
N_REGIONS = 3
#: Nominal image counts of the real datasets, every class they have (their papers and the
#: studies' tables; the preprocessing exclusions are not known before it runs), and the
#: official train/val/test shares where a dataset has one.
NOMINAL_IMAGES = {
    "oulu_casia": 10_379,  # VL/Strong, every frame, 6 classes (study A's Table 1)
    "faces": 2_052,
    "jaffe": 213,
    "fer2013": 35_887,
    "tfeid": 510,  # study B's 405/47/58
    "mug": 7_352,  # study B's 5,877/741/734
    "ckplus": 981,  # 327 labelled sequences x 3 apex frames
    "rafdb": 15_339,
    "kdef": 980,  # per camera view
    "affectnet": 291_650,
}
OFFICIAL_SHARES = {
    "fer2013": (28_709 / 35_887, 3_589 / 35_887, 3_589 / 35_887),
    "rafdb": (12_271 / 15_339, 0.0, 3_068 / 15_339),
    "affectnet": (287_651 / 291_650, 3_999 / 291_650, 0.0),
}
#: A data config of unknown size (e.g. `data=folder`): stated in the table.
UNKNOWN_IMAGES = 10_000


# ----------------------------------------------------------------------------- numbers


@dataclass(frozen=True)
class ModelProfile:
    """Per-image facts of a network: parameters, forward FLOPs, activation elements."""

    params: int
    flops_fwd: float
    activations: int

    @property
    def flops_train(self) -> float:
        return 3.0 * self.flops_fwd


@dataclass(frozen=True)
class RunSpec:
    """One training run as the cost model sees it."""

    model: str
    size: int
    profile: ModelProfile
    train_images: int
    val_images: int
    score_images: int
    epochs: int
    batch: int
    precision: str = "fp32"  # fp32 | bf16
    optimizer: str = "adam"  # a key of OPTIMIZER_STATE
    checkpoint_files: int = 2  # last.ckpt + best.ckpt while running
    keep_all: bool = False
    on_device_bytes: int = 0  # cached images held on the GPU (data.on_device)
    upper_bound: bool = False  # early stopping: epochs is a maximum
    exact_images: bool = True  # image counts computed, not nominal


@dataclass(frozen=True)
class Throughput:
    """Training images/s for a run and where the number came from."""

    images_per_s: float
    source: str


@dataclass(frozen=True)
class RunCost:
    time_s: float
    disk_running_bytes: int
    disk_kept_bytes: int
    memory_bytes: int
    throughput: Throughput


def checkpoint_bytes(params: int, optimizer: str = "adam", with_optimizer: bool = True) -> int:
    """A Lightning checkpoint: fp32 weights, plus the optimiser state when it has it."""
    slots = OPTIMIZER_STATE[optimizer] if with_optimizer else 0
    return 4 * params * (1 + slots)


def run_time_s(spec: RunSpec, images_per_s: float) -> float:
    """Wall time of one training run (module docstring: "time/run")."""
    per_epoch = spec.train_images + EVAL_COST * spec.val_images
    final = EVAL_COST * (spec.val_images + spec.score_images)
    return (spec.epochs * per_epoch + final) / images_per_s + RUN_OVERHEAD_S


def run_disk(spec: RunSpec) -> tuple[int, int]:
    """(bytes while running, bytes kept when finished) of one run's checkpoints."""
    full = checkpoint_bytes(spec.profile.params, spec.optimizer)
    running = (spec.checkpoint_files + 1) * full
    kept = spec.checkpoint_files * full if spec.keep_all else 4 * spec.profile.params
    return running, kept


def training_memory_bytes(spec: RunSpec, device: str = "cuda") -> int:
    """Peak training memory on the device (module docstring: "memory")."""
    p = spec.profile.params
    state = 4 * p * (2 + OPTIMIZER_STATE[spec.optimizer])
    bf16 = spec.precision == "bf16"
    casts = 2 * p if bf16 else 0
    acts = spec.batch * spec.profile.activations * (2 if bf16 else 4)
    context = CUDA_CONTEXT_BYTES if device == "cuda" else 0
    return state + casts + acts + context + spec.on_device_bytes


def eval_memory_bytes(profile: ModelProfile, batch: int, device: str = "cuda") -> int:
    """Grad-CAM evaluation: fp32 weights and gradients, activations of one batch (fp32)."""
    context = CUDA_CONTEXT_BYTES if device == "cuda" else 0
    return 8 * profile.params + 4 * batch * profile.activations + context


def cache_bytes(n_images: int, size: int, regions: int = N_REGIONS) -> int:
    """The preprocessing cache of one dataset: uint8 RGB crops + one uint8 mask per region."""
    return n_images * size * size * (3 + regions)


def run_cost(spec: RunSpec, tp: Throughput, device: str = "cuda") -> RunCost:
    running, kept = run_disk(spec)
    return RunCost(
        run_time_s(spec, tp.images_per_s),
        running,
        kept,
        training_memory_bytes(spec, device),
        tp,
    )


# ----------------------------------------------------------------------------- throughput


def load_throughput(path: str | Path) -> dict[str, dict[str, Any]] | None:
    """The `throughput` table of a train_throughput.json; None when the file is absent/bad."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    table = data.get("throughput") if isinstance(data, dict) else None
    return table if isinstance(table, dict) and table else None


def device_kind(device: str) -> str:
    """'cpu' for a CPU name or kind, else 'cuda'."""
    return "cpu" if device.lower() == "cpu" or device.lower().startswith("cpu ") else "cuda"


def match_device(table: Mapping[str, Mapping[str, Any]] | None, device: str) -> str | None:
    """The measured device name `device` selects: `cpu`/`cuda` any of that kind, else a
    case-insensitive substring of the name (`H100`); the first in sorted order."""
    if not table:
        return None
    names = sorted({str(r["device"]) for r in table.values()})
    if device in ("cpu", "cuda"):
        names = [n for n in names if device_kind_of(table, n) == device]
    else:
        names = [n for n in names if device.lower() in n.lower()]
    return names[0] if names else None


def device_kind_of(table: Mapping[str, Mapping[str, Any]], name: str) -> str:
    for r in table.values():
        if r["device"] == name:
            return str(r.get("kind") or device_kind(name))
    return device_kind(name)


def throughput(
    table: Mapping[str, Mapping[str, Any]] | None,
    device: str,
    model: str,
    size: int,
    precision: str,
    flops_train: float,
) -> Throughput:
    """Training images/s of (model, size, precision) on `device`: measured, scaled by FLOPs
    from the nearest measured model on the device (same precision first), or the default."""
    name = match_device(table, device)
    if table and name:
        exact = table.get(f"{name}|{model}|{size}|{precision}")
        if exact:
            return Throughput(
                float(exact["images_per_s"]), f"measured (batch {exact.get('batch', '?')})"
            )
        rows = [r for r in table.values() if r["device"] == name]
        same = [r for r in rows if r["precision"] == precision] or rows
        ref = min(
            same, key=lambda r: abs(math.log(float(r["flops_train_per_image"]) / flops_train))
        )
        ips = float(ref["images_per_s"]) * float(ref["flops_train_per_image"]) / flops_train
        return Throughput(ips, f"scaled from {ref['model']} {ref['size']}² {ref['precision']}")
    kind = device_kind(device)
    tflops = DEFAULT_TFLOPS[(kind, precision)]
    return Throughput(tflops * 1e12 / flops_train, f"stated default {tflops:g} TFLOP/s ({kind})")


# ----------------------------------------------------------------------------- configs


def precision_of(trainer: Mapping[str, Any]) -> str:
    """bf16 for a bf16/16 Lightning precision, else fp32."""
    p = str(trainer.get("precision") or "32")
    return "bf16" if p.startswith(("bf16", "16")) else "fp32"


def device_of(trainer: Mapping[str, Any]) -> str:
    """cuda for trainer.accelerator gpu/cuda, else cpu."""
    return "cuda" if str(trainer.get("accelerator", "cpu")) in ("gpu", "cuda") else "cpu"


def optimizer_of(optimizer: Mapping[str, Any] | None) -> str:
    target = str((optimizer or {}).get("_target_", "")).rsplit(".", 1)[-1].lower()
    if target == "sgd":
        return "sgd_momentum" if float((optimizer or {}).get("momentum", 0) or 0) else "sgd"
    return target if target in OPTIMIZER_STATE else "adam"


def dataset_images(data: Mapping[str, Any], classes: Sequence[str]) -> tuple[int, bool]:
    """(images of `classes` in a data config, exact?): synthetic sets are counted from their
    config (subjects x images per class x classes); real ones are nominal, scaled by the share
    of their classes the experiment keeps."""
    source = data.get("source") or {}
    have = list(data.get("classes") or classes)
    kept = [c for c in have if c in set(classes)]
    if str(source.get("_target_", "")).endswith("synthetic.scan"):
        return int(source["n_subjects"]) * int(source["per_class"]) * len(kept), True
    name = str(data.get("name"))
    if name == "oulu_casia":
        seqs = 480  # 80 subjects x 6 expressions
        n = 10_379 if source.get("frames", "all") == "all" else seqs * int(source.get("n_apex", 3))
        n = n * len([c for c in kept if c != "neutral"]) // 6
        return n + (seqs if source.get("neutral") and "neutral" in kept else 0), False
    n = NOMINAL_IMAGES.get(name)
    if n is None:
        return UNKNOWN_IMAGES, False
    return n * len(kept) // max(1, len(have)), False


def _shares(data: Mapping[str, Any], split: Mapping[str, Any]) -> tuple[float, float, float]:
    """(train, val, score) shares of a dataset under the run's split."""
    if split.get("name", "kfold") == "kfold":
        k = int(split.get("k", 5))
        return (k - 1) / k, 1 / k, 1 / k
    if data.get("official_split") and str(data.get("name")) in OFFICIAL_SHARES:
        return OFFICIAL_SHARES[str(data["name"])]
    s = data.get("split_shares") or {"train": 0.8, "val": 0.1, "test": 0.1}
    return float(s["train"]), float(s["val"]), float(s["test"])


def run_spec(cfg: Mapping[str, Any], profile: ModelProfile) -> RunSpec:
    """A training cell's resolved config (as `sweep.build_stages` composes it) -> RunSpec."""
    classes = list(cfg["classes"])
    split = cfg.get("split") or {}
    roles = {"source": cfg["data"], **({"target": cfg["target"]} if cfg.get("target") else {})}
    sizes = {r: dataset_images(d, classes) for r, d in roles.items()}
    shares = {r: _shares(d, split) for r, d in roles.items()}
    train_on = (cfg.get("strategy") or {}).get("train_on", "auto")
    if train_on == "auto":
        train_on = "target" if "target" in roles else "source"
    trained = ["source", "target"] if train_on == "both" else [train_on]
    fraction = float(split.get("target_fraction", 1.0))

    def n(role: str, i: int) -> float:
        scale = fraction if (role == "target" and i == 0) else 1.0
        return sizes[role][0] * shares[role][i] * scale

    train = sum(n(r, 0) for r in trained)
    val = n("source" if train_on == "source" else "target", 1)
    score = sum(n(r, 2) for r in roles)
    trainer = cfg.get("trainer") or {}
    limit = trainer.get("limit_train_batches")
    batch = int((cfg.get("datamodule") or {}).get("batch_size", 32))
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        train = min(train, limit * batch)
    elif isinstance(limit, float) and 0 < limit <= 1:
        train *= limit
    epochs = int(trainer.get("max_epochs", 1))
    files = 0
    for ckpt in (cfg.get("callbacks") or {}).values():  # every ModelCheckpoint (best, last)
        if not str((ckpt or {}).get("_target_", "")).endswith("ModelCheckpoint"):
            continue
        top_k = int(ckpt.get("save_top_k", 1))
        files += (1 if ckpt.get("save_last") else 0) + (epochs if top_k < 0 else top_k)
    model = cfg["model"]
    size = int(model["input"]["size"])
    on_device = 0
    if any((d or {}).get("on_device") for d in (cfg["data"], cfg.get("datamodule"))):
        chans = int(model["input"]["channels"])
        on_device = sum(sizes[r][0] for r in trained) * size * size * chans
    callbacks = cfg.get("callbacks") or {}
    return RunSpec(
        model=str(model.get("name", model.get("arch"))),
        size=size,
        profile=profile,
        train_images=round(train),
        val_images=round(val),
        score_images=round(score),
        epochs=epochs,
        batch=batch,
        precision=precision_of(trainer),
        optimizer=optimizer_of(cfg.get("optimizer")),
        checkpoint_files=max(1, files),
        keep_all=(cfg.get("train") or {}).get("keep_checkpoints") == "all",
        on_device_bytes=on_device,
        upper_bound=any(
            str((c or {}).get("_target_", "")).endswith("EarlyStopping") for c in callbacks.values()
        ),
        exact_images=all(exact for _, exact in sizes.values()),
    )


@functools.cache
def _profile(model_json: str, num_classes: int) -> ModelProfile:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fer.models.build import build_model

    model_cfg = json.loads(model_json)
    inp = model_cfg["input"]
    shape = (1, int(inp["channels"]), int(inp["size"]), int(inp["size"]))
    # On the meta device: shapes only, no memory, no weights file (init is irrelevant here).
    with torch.device("meta"):
        net = build_model(model_cfg, {"name": "glorot"}, num_classes)
        params = sum(p.numel() for p in net.parameters())
        elements = [math.prod(shape)]

        def count(_m: Any, _i: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor):
                elements.append(out.numel())

        leaves = [m for m in net.modules() if not list(m.children())]
        hooks = [m.register_forward_hook(count) for m in leaves]
        with FlopCounterMode(display=False) as counter:
            net(torch.zeros(shape))
        for h in hooks:
            h.remove()
    return ModelProfile(params, float(counter.get_total_flops()), int(sum(elements)))


def profile_model(model_cfg: Mapping[str, Any], num_classes: int) -> ModelProfile:
    """Parameters, forward FLOPs and activation elements per image (meta device; cached)."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(OmegaConf.create(dict(model_cfg)), resolve=True)
    return _profile(json.dumps(plain, sort_keys=True), int(num_classes))


# ----------------------------------------------------------------------------- stages


@dataclass
class StageCost:
    """A stage's totals (runs one after another on the target device)."""

    name: str
    script: str
    cells: int
    todo: int
    time_s: float = 0.0
    todo_time_s: float = 0.0
    disk_kept_bytes: int = 0
    disk_running_extra_bytes: int = 0  # the largest run's in-progress files beyond what it keeps
    memory_bytes: int = 0
    throughputs: dict[str, Throughput] = field(default_factory=dict)  # "model size² prec" -> tp
    upper_bound: bool = False
    nominal: bool = False


def stage_cost(
    name: str,
    script: str,
    runs: Sequence[tuple[RunCost, bool, str]],
    upper_bound: bool = False,
    nominal: bool = False,
) -> StageCost:
    """Totals of `runs`: (cost, still to run?, throughput label) per cell."""
    sc = StageCost(name, script, len(runs), sum(1 for _, todo, _ in runs if todo))
    sc.upper_bound, sc.nominal = upper_bound, nominal
    for cost, todo, label in runs:
        sc.time_s += cost.time_s
        sc.todo_time_s += cost.time_s if todo else 0.0
        sc.disk_kept_bytes += cost.disk_kept_bytes
        extra = cost.disk_running_bytes - cost.disk_kept_bytes
        sc.disk_running_extra_bytes = max(sc.disk_running_extra_bytes, extra)
        sc.memory_bytes = max(sc.memory_bytes, cost.memory_bytes)
        sc.throughputs[label] = cost.throughput
    return sc


def evaluate_cost(
    profile: ModelProfile, images: int, tp: Throughput, batch: int, device: str
) -> RunCost:
    """evaluate.py on one run: EVALUATE_COST training steps per scored image."""
    time_s = images * EVALUATE_COST / tp.images_per_s + RUN_OVERHEAD_S
    return RunCost(time_s, 0, 0, eval_memory_bytes(profile, batch, device), tp)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def human_time(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def format_costs(
    stages: Sequence[StageCost],
    caches: Mapping[str, int],
    device: str,
    source: str,
) -> str:
    """The dry run's cost table: one row per stage, the grid, the cache and the formulas."""
    head = (
        f"{'stage':<12} {'cells':>5} {'to run':>6} {'time':>9} {'to run':>9} "
        f"{'disk kept':>10} {'disk peak':>10} {'memory/run':>10}"
    )
    lines = [f"cost estimate on {device} ({source}); runs one after another", head]
    for s in stages:
        mark = "≤" if s.upper_bound else ""
        lines.append(
            f"{s.name:<12} {s.cells:>5} {s.todo:>6} {mark + human_time(s.time_s):>9} "
            f"{mark + human_time(s.todo_time_s):>9} {human_bytes(s.disk_kept_bytes):>10} "
            f"{human_bytes(s.disk_kept_bytes + s.disk_running_extra_bytes):>10} "
            f"{human_bytes(s.memory_bytes):>10}"
        )
    kept = sum(s.disk_kept_bytes for s in stages)
    cache = sum(caches.values())
    extra = max((s.disk_running_extra_bytes for s in stages), default=0)
    any_bound = "≤" if any(s.upper_bound for s in stages) else ""
    lines.append(
        f"{'grid':<12} {sum(s.cells for s in stages):>5} {sum(s.todo for s in stages):>6} "
        f"{any_bound + human_time(sum(s.time_s for s in stages)):>9} "
        f"{any_bound + human_time(sum(s.todo_time_s for s in stages)):>9} "
        f"{human_bytes(kept + cache):>10} {human_bytes(kept + cache + extra):>10} "
        f"{human_bytes(max((s.memory_bytes for s in stages), default=0)):>10}"
    )
    lines.append("throughput used (training images/s):")
    seen: dict[str, Throughput] = {}
    for s in stages:
        seen.update(s.throughputs)
    for label, tp in seen.items():
        lines.append(f"  {label:<28} {tp.images_per_s:>10.1f}  {tp.source}")
    if caches:
        lines.append(
            "preprocessing cache (once, shared by every run; included in the grid's disk): "
            + ", ".join(f"{k} {human_bytes(v)}" for k, v in caches.items())
        )
    notes = []
    if any(s.nominal for s in stages):
        notes.append("image counts of real datasets are nominal (their papers), not scanned")
    if any_bound:
        notes.append("≤: early stopping may end runs sooner (max_epochs counted)")
    notes.append("evaluate writes JSON and figures only (not counted as disk)")
    notes.append(
        "time = epochs·(train + val/3)/img/s + (val + scored)/3/img/s + "
        f"{RUN_OVERHEAD_S:g} s; evaluate = {EVALUATE_COST:.2f} training steps per scored image"
    )
    notes.append(
        "disk kept = reported checkpoint, weights only (4 B/param); peak adds the largest "
        "run's last+best checkpoints with optimiser state + one atomic-write copy; "
        "memory = 4P weights + 4P grads + 4sP optimiser (+2P bf16 copies) + batch·activations"
        + (" + 1 GiB CUDA context" if device_kind(device) == "cuda" else "")
    )
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)


def estimate_study(
    stages: Sequence[Any],
    eval_datasets: Mapping[str, Sequence[Mapping[str, Any]]],
    throughput_path: str | Path,
    device: str | None = None,
    precision: str | None = None,
    eval_batch: int = 128,
) -> str:
    """The cost table of `sweep.build_stages`' stages (duck-typed: name, script, cells with
    `resolved`, `state`, `run_dir`). `eval_datasets`: per evaluate stage, the resolved data
    configs it scores whole. `device`: cpu | cuda | a measured device's name substring;
    `precision`: fp32 | bf16; None = each training cell's own trainer (the first cell's device
    labels the table)."""
    table = load_throughput(throughput_path)
    trained: dict[str, dict] = {}  # run_dir -> resolved config
    for stage in stages:
        for cell in stage.cells:
            if cell.resolved is not None:
                trained[str(cell.run_dir)] = cell.resolved
    first = next(iter(trained.values()), {})
    target = device or device_of(first.get("trainer") or {})
    measured = match_device(table, target)
    if table is None:
        source = f"no measurement ({throughput_path} absent): stated default throughput"
    elif measured is None:
        source = f"nothing measured on {target} in {throughput_path}: stated default throughput"
    else:
        source = f"measured: {throughput_path}"
    kind = device_kind_of(table, measured) if table and measured else device_kind(target)
    caches: dict[str, int] = {}
    out: list[StageCost] = []
    for stage in stages:
        rows: list[tuple[RunCost, bool, str]] = []
        bound = nominal = False
        for cell in stage.cells:
            cfg = cell.resolved if stage.script == "train.py" else trained.get(str(cell.run_dir))
            if cfg is None:
                continue
            classes = list(cfg["classes"])
            prof = profile_model(cfg["model"], len(classes))
            spec = run_spec(cfg, prof)
            if precision:
                spec = dataclasses.replace(spec, precision=precision)
            dev = device or device_of(cfg.get("trainer") or {})
            tp = throughput(table, dev, spec.model, spec.size, spec.precision, prof.flops_train)
            label = f"{spec.model} {spec.size}² {spec.precision}"
            todo = cell.state != "finished"
            if stage.script == "train.py":
                rows.append((run_cost(spec, tp, kind), todo, label))
                bound |= spec.upper_bound
                nominal |= not spec.exact_images
                for d in [cfg["data"], *([cfg["target"]] if cfg.get("target") else [])]:
                    _add_cache(caches, d, classes)
            else:
                own = {cfg["data"].get("name"), (cfg.get("target") or {}).get("name")}
                extra = [d for d in eval_datasets.get(stage.name, []) if d.get("name") not in own]
                # outside the run's split: whole under k-fold, the test subset under holdout
                images = spec.score_images + sum(
                    dataset_images(d, classes)[0]
                    * (_shares(d, cfg.get("split") or {})[2] if _is_holdout(cfg) else 1.0)
                    for d in extra
                )
                for d in extra:
                    _add_cache(caches, d, classes)
                cost = evaluate_cost(prof, round(images), tp, eval_batch, kind)
                rows.append((cost, todo, label))
        out.append(stage_cost(stage.name, stage.script, rows, bound, nominal))
    return format_costs(out, caches, measured or target, source)


def _is_holdout(cfg: Mapping[str, Any]) -> bool:
    return (cfg.get("split") or {}).get("name") == "holdout"


def _add_cache(caches: dict[str, int], data: Mapping[str, Any], classes: Sequence[str]) -> None:
    """One cache entry per dataset, crop size and class list (the cache holds the classes
    the experiment selects: `FERDataModule._faces`)."""
    size = int(data.get("cache_size") or 224)
    n, _ = dataset_images(data, classes)
    kept = len([c for c in data.get("classes") or classes if c in set(classes)])
    caches.setdefault(f"{data.get('name')} {size}² {kept} cl", cache_bytes(n, size))

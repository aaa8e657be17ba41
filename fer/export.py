"""Export a finished run: `python -m fer.export run=<run-dir>` → `<run>/export/` (or `out=`):

- `weights.pt`: the network's state dict alone (tensors only: loads with
  `torch.load(weights_only=True)` and into `init=checkpoint`'s `init.path`);
- `model.onnx`: the network (input `image`, N×C×H×W float32, normalised; output `logits`,
  N×classes), exported with torch's ONNX exporter and checked by running it with onnxruntime
  against PyTorch on real faces from the run's own data and on random inputs: the largest
  difference is in the card, and more than `export.tolerance` refuses the export;
- `model_card.md` / `model_card.json`: class order, input size/channels, normalisation, the
  preprocessing that makes a face from a photo, training data, the study it came from, its
  scores, and the datasets' licence terms (DATA_LICENSES.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from fer import runs
from fer.errors import ConfigError, DataError, FerError
from fer.io import atomic_write, atomic_write_json, atomic_write_text, read_json_or_none

WEIGHTS = "weights.pt"
ONNX = "model.onnx"
CARD = "model_card"


class ExportError(FerError):
    """The exported model does not reproduce the PyTorch one."""


def _sample_inputs(run_cfg: DictConfig, cache_dir: str, n: int, seed: int) -> torch.Tensor:
    """Up to `n` normalised faces from the run's own reported subset (what it was scored on),
    plus as many standard-normal inputs: the check covers real and off-distribution values."""
    from omegaconf import open_dict

    from fer.train import make_datamodule

    inp = run_cfg.model.input
    shape = (int(inp.channels), int(inp.size), int(inp.size))
    noise = torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))
    cfg = run_cfg.copy()
    with open_dict(cfg):
        cfg.paths.cache_dir = cache_dir
        cfg.preprocess.progress = False
    try:
        dm = make_datamodule(cfg)
        dm.setup("fit")
        dataset = next(iter(dm.score_sets.values()))
    except FerError as e:  # the data is not here (another machine): random inputs only
        print(f"export check on random inputs only: the run's data is unavailable ({e})")
        return noise
    pick = np.linspace(0, len(dataset) - 1, min(n, len(dataset))).astype(int)
    faces = torch.stack([dataset[int(i)]["image"] for i in pick])
    return torch.cat([faces, noise])


def export_onnx(net: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    """ONNX with a dynamic batch axis, written atomically."""
    import logging
    import warnings

    from torch.export import Dim

    for name in ("onnx_ir", "onnxscript", "torch.onnx"):  # per-pass INFO lines: noise here
        logging.getLogger(name).setLevel(logging.WARNING)

    net = net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net,
            (example[:2],),
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes=({0: Dim("batch")},),
            dynamo=True,
            verbose=False,
        )
    return atomic_write(path, lambda f: f.write(program.model_proto.SerializeToString()))


def onnx_difference(net: torch.nn.Module, path: Path, inputs: torch.Tensor) -> float:
    """Largest |logit difference| between onnxruntime and PyTorch on `inputs` (odd batch
    sizes included, so the dynamic axis is exercised)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        expected = net(inputs).numpy()
    got = np.concatenate(
        [
            session.run(None, {"image": chunk.numpy()})[0]
            for chunk in torch.split(inputs, 3)  # batches of 3 (and the rest)
        ]
    )
    return float(np.abs(got - expected).max())


def model_card(run_dir: Path, run_cfg: DictConfig, max_diff: float, n_checked: int) -> dict:
    """What a user of the exported model needs, from the run's own files."""
    from fer.data.preprocess import settings_from

    metrics = read_json_or_none(run_dir / runs.METRICS) or {}
    prov = read_json_or_none(run_dir / "provenance.json") or {}
    inp = run_cfg.model.input
    pre = OmegaConf.to_container(run_cfg.preprocess, resolve=True)
    datasets = [c for c in (run_cfg.get("data"), run_cfg.get("target")) if c]
    trained_on = (metrics.get("data") or {}).get("train_on")
    return {
        "run": run_dir.name,
        "study": str(run_cfg.get("name")),
        "classes": [str(c) for c in run_cfg.classes],
        "input": {
            "name": "image",
            "layout": "NCHW float32",
            "channels": int(inp.channels),
            "size": int(inp.size),
            "normalise": "x = (pixel / 255 - mean) / std, per channel"
            + (" (grey: cv2 RGB2GRAY first)" if int(inp.channels) == 1 else " (RGB order)"),
            "mean": [float(m) for m in inp.mean],
            "std": [float(s) for s in inp.std],
        },
        "output": {"name": "logits", "softmax": "apply softmax for class probabilities"},
        "preprocessing": {
            **settings_from(run_cfg.preprocess, datasets[-1], int(inp.size)).__dict__,
            "combine": pre.get("combine", "none"),
            "how": "python predict.py run=<this run> input=<images> applies it exactly",
        },
        "model": {
            "arch": str(run_cfg.model.arch),
            "attention": OmegaConf.to_container(run_cfg.model.get("attention"), resolve=True)
            if run_cfg.model.get("attention")
            else None,
            "init": str(run_cfg.init.name),
        },
        "training_data": {
            "datasets": [str(c.name) for c in datasets],
            "trained_on": trained_on,
            "split": OmegaConf.to_container(run_cfg.split, resolve=True),
            "subsets": {
                role: {
                    k: (v.get("size"), len(v.get("subjects") or []))
                    for k, v in d.items()
                    if isinstance(v, dict) and "size" in v
                }
                for role, d in (metrics.get("data") or {}).items()
                if isinstance(d, dict) and "name" in d
            },
            "cache": {
                role: d.get("cache")
                for role, d in (metrics.get("data") or {}).items()
                if isinstance(d, dict) and d.get("cache")
            },
        },
        "scores": metrics.get("scores"),
        "provenance": {k: prov.get(k) for k in ("git", "packages", "torch") if k in prov},
        "onnx_check": {"max_abs_diff": max_diff, "n_inputs": n_checked},
        "licence": "Trained on the datasets above: their terms (DATA_LICENSES.md) bind the "
        "weights' use; the dlib 68-point landmark model used in preprocessing is for "
        "non-commercial use only.",
    }


def card_markdown(card: dict) -> str:
    """The card as a short Markdown page."""
    i, p, m = card["input"], card["preprocessing"], card["model"]
    data = card["training_data"]
    size = f"{i['size']}×{i['size']}"
    lines = [
        f"# Model card: {card['run']}",
        "",
        f"- Study: `{card['study']}`",
        f"- Model: `{m['arch']}`, attention {m['attention'] or 'none'}, init `{m['init']}`",
        f"- Classes (output order): {', '.join(card['classes'])}",
        f"- Input `{i['name']}`: {i['layout']}, {i['channels']} channel(s), {size}",
        f"- Normalisation: {i['normalise']}; mean {i['mean']}, std {i['std']}",
        f"- Preprocessing: `{p['method']}` face crops at {p['size']} px, margin {p['margin']}",
        f"  ({p['how']})",
        f"- Training data: {', '.join(data['datasets'])} (trained on: {data['trained_on']})",
        f"- ONNX check: max |logit difference| {card['onnx_check']['max_abs_diff']:.2e} "
        f"on {card['onnx_check']['n_inputs']} inputs",
        "",
        "## Scores",
        "",
    ]
    for name, s in (card.get("scores") or {}).items():
        acc = s.get("acc", float("nan"))
        lines.append(f"- {name} ({s.get('subset')}, n={s.get('n')}): accuracy {acc:.3f}")
    lines += ["", "## Licence", "", card["licence"], ""]
    return "\n".join(lines)


def export(cfg: DictConfig) -> dict[str, Any]:
    """Write weights, ONNX and the model card for `cfg.run`; returns the card."""
    from fer.models.build import load_trained

    if OmegaConf.is_missing(cfg, "run"):
        raise ConfigError("run= is required: python -m fer.export run=<run-dir>")
    run_dir = Path(str(cfg.run))
    if runs.status(run_dir) != "finished":
        raise DataError(f"run={run_dir}: not a finished run (its metrics.json says so when it is)")
    run_cfg = OmegaConf.create(runs.read_config(run_dir))
    checkpoint = cfg.export.checkpoint or run_cfg.eval.checkpoint
    ckpt = run_dir / f"{checkpoint}.ckpt"
    net = load_trained(run_cfg.model, len(run_cfg.classes), ckpt)
    out = Path(str(cfg.out)) if cfg.get("out") else run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / WEIGHTS, lambda f: torch.save(net.state_dict(), f))
    inputs = _sample_inputs(run_cfg, str(cfg.paths.cache_dir), int(cfg.export.n_check), 0)
    export_onnx(net, inputs, out / ONNX)
    diff = onnx_difference(net, out / ONNX, inputs)
    if diff > float(cfg.export.tolerance):
        raise ExportError(
            f"{out / ONNX}: onnxruntime differs from PyTorch by {diff:.2e} "
            f"(> export.tolerance={cfg.export.tolerance})"
        )
    card = model_card(run_dir, run_cfg, diff, len(inputs))
    card["checkpoint"] = str(ckpt)
    atomic_write_json(out / f"{CARD}.json", card)
    atomic_write_text(out / f"{CARD}.md", card_markdown(card))
    print(f"exported {run_dir.name} to {out}: {WEIGHTS}, {ONNX} (max |Δ| {diff:.1e}), {CARD}.md")
    return card


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from fer.cli import run_job

    run_job(export, cfg)


if __name__ == "__main__":
    main()

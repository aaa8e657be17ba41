"""`predict(cfg)`: apply a finished run to new images with the run's *own* preprocessing.

`python predict.py run=<run-dir> input=<folder or image>` reads the run's `config.yaml`
(detection/alignment method, crop size and margin, ROI masking, input size, channels and
normalisation — exactly what its cached faces went through) and its checkpoint, and writes
to `<run>/predict/<input-name>/` (or `out=`):

- `predictions.csv`: one row per usable image: path, predicted class, its probability, one
  `p_<class>` column per class in the run's class order, `excluded` (the reason when the
  face's regions were not segmented: scored on its fallback crop, as evaluation does), and
  `true` when the image's parent folder names a class (then `summary.json` has the accuracy);
- `unusable.csv`: every file that gave no prediction, with the reason (unreadable, not an
  image, no face found) — never silently dropped;
- `cams/`: Grad-CAM overlays per image when `predict.cam=true`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from fer import runs
from fer.errors import ConfigError, DataError
from fer.io import atomic_write_json, atomic_write_text

#: Extensions read as images; other files are listed in unusable.csv, not ignored.
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".gif", ".webp"}
)
#: For runs whose faces needed no detection (`preprocess: none`, ready crops), a file counts
#: as a face only when dlib's frontal detector finds one on it upscaled to this side, at this
#: detection threshold. Measured on 64-px synthetic faces: at -0.5 every lab/gray/aged face of
#: the cached sets is found (at 0.0, 3-4 % of gray/aged ones are missed) and none of 34
#: non-faces (noise, flat, gradients, shapes) is.
FACE_CHECK_SIDE = 128
FACE_CHECK_THRESHOLD = -0.5


def list_inputs(spec: str | Path) -> tuple[list[Path], list[dict[str, str]]]:
    """Image files under a folder (recursive, sorted) or a single file; other files listed
    with a reason."""
    root = Path(spec)
    if not root.exists():
        raise DataError(f"input={spec}: no such file or folder")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    images, other = [], []
    for p in files:
        if p.name.startswith("."):
            continue
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(p)
        else:
            other.append(
                {"path": str(p), "reason": f"not an image file ({p.suffix or 'no'} extension)"}
            )
    return images, other


def _true_labels(paths: list[Path], classes: list[str], aliases: dict[str, str]) -> list[str]:
    """The parent folder's class when it names one of the run's classes (else "")."""
    known = {c.lower(): c for c in classes} | {k.lower(): str(v) for k, v in aliases.items()}
    found = [known.get(p.parent.name.lower(), "") for p in paths]
    return [c if c in classes else "" for c in found]


def _face_found(image: np.ndarray, detector: Any) -> bool:
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    scale = FACE_CHECK_SIDE / min(grey.shape)
    if scale > 1:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    return len(detector.detect(grey)[0]) > 0


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Predict every image `cfg.input` names with the run `cfg.run`; returns the summary."""
    from fer.data.faces import LandmarkFaces
    from fer.data.preprocess import FaceArrays, crop_images, settings_from
    from fer.models.build import load_trained
    from fer.train import make_datamodule

    check_config(cfg)
    run_dir = Path(str(cfg.run))
    stored = runs.read_config(run_dir)
    if stored is None:
        raise DataError(f"run={run_dir}: not a run directory (no {runs.CONFIG})")
    run_cfg = OmegaConf.create(stored)
    p = cfg.predict
    checkpoint = p.checkpoint or run_cfg.eval.checkpoint
    ckpt = run_dir / f"{checkpoint}.ckpt"
    if not ckpt.exists():
        raise DataError(f"{ckpt} not found (predict.checkpoint=last|best picks another)")
    classes = [str(c) for c in run_cfg.classes]
    out_dir = (
        Path(str(cfg.out)) if cfg.get("out") else run_dir / "predict" / Path(str(cfg.input)).stem
    )
    images, unusable = list_inputs(str(cfg.input))

    # The faces the model trained on: the trained-on dataset's preprocessing (the target's
    # when the run adapted to one).
    data_cfg = run_cfg.get("target") or run_cfg.data
    model_input = run_cfg.model.input
    settings = settings_from(run_cfg.preprocess, data_cfg, int(model_input.size))
    results = crop_images(images, settings, int(p.workers), bool(p.progress))
    checker = None
    if settings.method == "none" and p.face_check:
        checker = LandmarkFaces(size=settings.size, threshold=FACE_CHECK_THRESHOLD)
    keep, crops, masks, excluded = [], [], [], []
    for path, (crop, mask, reason, _, _) in zip(images, results, strict=True):
        if crop is None:
            unusable.append({"path": str(path), "reason": reason or "no face"})
            continue
        if checker is not None and not _face_found(crop, checker):
            unusable.append(
                {"path": str(path), "reason": "no face found (predict.face_check: dlib detector)"}
            )
            continue
        keep.append(path)
        crops.append(crop)
        masks.append(
            mask if mask is not None else np.zeros((3, settings.size, settings.size), np.uint8)
        )
        excluded.append(reason or "")

    summary: dict[str, Any] = {
        "run": str(run_dir),
        "checkpoint": str(ckpt),
        "input": str(cfg.input),
        "n_files": len(images) + sum(1 for u in unusable if "not an image" in u["reason"]),
        "n_predicted": len(keep),
        "n_unusable": len(unusable),
        "classes": classes,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out_dir / "unusable.csv",
        pd.DataFrame(unusable, columns=["path", "reason"]).to_csv(index=False),
    )
    if not keep:
        atomic_write_json(out_dir / "summary.json", summary)
        raise DataError(
            f"input={cfg.input}: no usable image ({len(unusable)} listed with reasons in "
            f"{out_dir / 'unusable.csv'})"
        )

    true = _true_labels(keep, classes, dict(p.get("aliases") or {}))
    frame = pd.DataFrame(
        {"path": [str(k) for k in keep], "label": true, "subject": "", "excluded": excluded}
    )
    faces = FaceArrays(np.stack(crops), np.stack(masks).astype(np.uint8), frame, pd.DataFrame())
    with open_dict(run_cfg):
        run_cfg.paths.cache_dir = str(cfg.paths.cache_dir)
    dm = make_datamodule(run_cfg)
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index.get(t, 0) for t in true], np.int64)
    dataset = dm.eval_set(faces, np.arange(len(keep)), labels)
    loader = torch.utils.data.DataLoader(dataset, batch_size=int(p.batch_size), shuffle=False)
    net = load_trained(run_cfg.model, len(classes), ckpt)
    with torch.inference_mode():
        probs = torch.cat([net(b["image"]).softmax(1) for b in loader]).numpy()
    pred = probs.argmax(1)
    table = pd.DataFrame(
        {
            "path": frame["path"],
            "pred": [classes[i] for i in pred],
            "prob": probs.max(1),
            **{f"p_{c}": probs[:, i] for i, c in enumerate(classes)},
            "excluded": excluded,
            "true": true,
        }
    )
    atomic_write_text(out_dir / "predictions.csv", table.to_csv(index=False, float_format="%.6f"))
    labelled = np.array([t != "" for t in true])
    if labelled.any():
        hits = (table["pred"] == table["true"]).to_numpy()[labelled]
        summary.update(n_labelled=int(labelled.sum()), acc=float(hits.mean()))
    if p.cam:
        summary["cams"] = str(
            _write_cams(net, loader, faces, classes, pred, out_dir / "cams", run_cfg)
        )
    summary["out_dir"] = str(out_dir)
    atomic_write_json(out_dir / "summary.json", summary)
    acc = (
        f", accuracy {summary['acc']:.3f} on {summary['n_labelled']} labelled"
        if "acc" in summary
        else ""
    )
    print(
        f"predicted {len(keep)} of {summary['n_files']} files{acc}; "
        f"{len(unusable)} unusable (listed in {out_dir / 'unusable.csv'}); "
        f"predictions in {out_dir / 'predictions.csv'}"
    )
    return summary


def _write_cams(
    net: torch.nn.Module,
    loader: Any,
    faces: Any,
    classes: list[str],
    pred: np.ndarray,
    folder: Path,
    run_cfg: DictConfig,
) -> Path:
    """One Grad-CAM overlay PNG per image, for its predicted class."""
    from PIL import Image

    from fer.explain.cam import compute_cams
    from fer.report.plots import overlay

    result = compute_cams(net, loader, target="pred", layer=run_cfg.eval.get("cam_layer"))
    folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(faces.frame["path"]):
        image = overlay(np.asarray(faces.images[i]), result.cams[i], None)
        name = f"{i:05d}_{Path(path).stem}__{classes[int(pred[i])]}.png"
        Image.fromarray(image).save(folder / name)
    return folder


def check_config(cfg: DictConfig) -> None:
    """Refuse a missing `run=` / `input=` with the command that works."""
    for key in ("run", "input"):
        if OmegaConf.is_missing(cfg, key):
            raise ConfigError(
                f"{key}= is required: python predict.py run=<run-dir> input=<folder or image>"
            )

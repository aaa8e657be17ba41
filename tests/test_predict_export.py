"""predict.py and fer.export on a tiny finished synthetic run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import train_tiny_run
from hydra import compose, initialize_config_dir
from PIL import Image

from fer.errors import DataError
from fer.export import export
from fer.models.build import load_trained
from fer.predict import predict

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    return train_tiny_run(tmp_path_factory.mktemp("predictrun"), epochs=2)


def _held_out_folder(run_dir: Path, cache: Path, dest: Path) -> int:
    """The run's reported (validation) faces as <class>/<file>.png, from the rendered set."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    subjects = set(metrics["data"]["source"]["val"]["subjects"])
    classes = set(metrics["classes"])
    [manifest] = (cache / "synthetic").glob("lab-*/manifest.csv")
    frame = pd.read_csv(manifest)
    rows = frame[frame["subject"].isin(subjects) & frame["label"].isin(classes)]
    for r in rows.itertuples():
        (dest / r.label).mkdir(parents=True, exist_ok=True)
        shutil.copy(manifest.parent / r.path, dest / r.label / f"{r.subject}_{Path(r.path).name}")
    return len(rows)


def test_predict_reproduces_the_runs_accuracy_and_lists_unusable_files(run, tmp_path):
    run_dir, cache = run
    folder = tmp_path / "faces"
    n = _held_out_folder(run_dir, cache, folder)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "not_a_face.png")
    (folder / "README.txt").write_text("notes")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "predict",
            overrides=[f"run={run_dir}", f"input={folder}", f"paths.cache_dir={cache}"],
        )
    summary = predict(cfg)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    reported = metrics["scores"]["synthetic_lab"]
    assert summary["n_predicted"] == summary["n_labelled"] == n == reported["n"]
    assert summary["acc"] == pytest.approx(reported["acc"], abs=1e-12)
    out = run_dir / "predict" / "faces"
    table = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert len(table) == n and set(table["true"]) <= set(metrics["classes"])
    probs = table[[f"p_{c}" for c in metrics["classes"]]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    unusable = pd.read_csv(out / "unusable.csv").set_index("path")["reason"]
    assert len(unusable) == 3
    assert unusable[str(folder / "corrupt.png")].startswith("unreadable image")
    assert unusable[str(folder / "not_a_face.png")].startswith("no face found")
    assert unusable[str(folder / "README.txt")].startswith("not an image file")


def test_predict_single_image_with_cam_overlay(run, tmp_path):
    run_dir, cache = run
    folder = tmp_path / "faces"
    _held_out_folder(run_dir, cache, folder)
    image = sorted(folder.rglob("*.png"))[0]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "predict",
            overrides=[
                f"run={run_dir}",
                f"input={image}",
                f"out={tmp_path / 'one'}",
                f"paths.cache_dir={cache}",
                "predict.cam=true",
            ],
        )
    summary = predict(cfg)
    assert summary["n_predicted"] == 1
    [overlay] = (tmp_path / "one" / "cams").glob("*.png")
    assert np.asarray(Image.open(overlay)).shape == (48, 48, 3)  # at the model input size


def test_predict_refuses_a_folder_with_nothing_usable(run, tmp_path):
    run_dir, _ = run
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.jpg").write_bytes(b"")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("predict", overrides=[f"run={run_dir}", f"input={tmp_path / 'empty'}"])
    with pytest.raises(DataError, match=r"no usable image.*unusable\.csv"):
        predict(cfg)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("predict", overrides=[f"run={run_dir}", f"input={tmp_path / 'none'}"])
    with pytest.raises(DataError, match="no such file or folder"):
        predict(cfg)


def test_export_weights_onnx_and_card(run, tmp_path):
    import onnxruntime as ort

    run_dir, cache = run
    out = tmp_path / "export"
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "export", overrides=[f"run={run_dir}", f"out={out}", f"paths.cache_dir={cache}"]
        )
    card = export(cfg)
    run_cfg = compose_run_config(run_dir)
    net = load_trained(run_cfg.model, len(run_cfg.classes), run_dir / "last.ckpt")
    weights = torch.load(out / "weights.pt", weights_only=True)
    for name, tensor in net.state_dict().items():
        assert torch.equal(weights[name], tensor), name
    # an independent check of the ONNX file on an odd batch of new inputs
    x = torch.randn(5, 1, 48, 48, generator=torch.Generator().manual_seed(1))
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})[0]
    with torch.inference_mode():
        assert np.abs(got - net(x).numpy()).max() < 1e-4
    assert card["onnx_check"]["max_abs_diff"] < 1e-4
    assert card["onnx_check"]["n_inputs"] == 16  # 8 real faces + 8 random inputs
    assert card["classes"] == list(run_cfg.classes)
    assert card["input"]["channels"] == 1 and card["input"]["size"] == 48
    assert card["preprocessing"]["method"] == "none" and card["preprocessing"]["size"] == 64
    assert card["training_data"]["datasets"] == ["synthetic_lab"]
    text = (out / "model_card.md").read_text()
    assert "anger, disgust, fear, happiness, sadness, surprise" in text
    assert "non-commercial" in text


def compose_run_config(run_dir: Path):
    from omegaconf import OmegaConf

    from fer.runs import read_config

    return OmegaConf.create(read_config(run_dir))

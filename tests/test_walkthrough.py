"""The README's real-data walkthrough, run as written on a fabricated JAFFE tree.

The commands and config files are read from the README itself (the blocks after the
`<!-- walkthrough:... -->` markers), so a changed instruction is tested as changed. They run in
a copy of the checkout (entrypoints, `fer/`, `conf/` and a `.venv` link), with the README's
example folders (`/datasets`, `/scratch/me`, `/home/me`) mapped into a temp dir: that is the
only edit made to them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir

from fer.data.synthetic import render_set
from fer.evaluate import evaluate

REPO = Path(__file__).resolve().parents[1]
JAFFE_CODES = {
    "anger": "AN",
    "disgust": "DI",
    "fear": "FE",
    "happiness": "HA",
    "sadness": "SA",
    "surprise": "SU",
    "neutral": "NE",
}
JAFFE_SUBJECTS = ["KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM"]
RUN = "outputs/default/data-jaffe__trainer-debug"


def readme_block(marker: str) -> str:
    """The fenced block right after `<!-- walkthrough:<marker> -->` in README.md."""
    text = (REPO / "README.md").read_text()
    found = re.search(rf"<!-- walkthrough:{marker} -->\s*```\w*\n(.*?)```", text, re.S)
    assert found, f"README.md has no walkthrough:{marker} block"
    return found.group(1)


def fabricate_jaffe(root: Path) -> int:
    """Synthetic grey faces (the JAFFE-like domain) in JAFFE's flat layout, 128x128 TIFF, plus
    one zero-byte file: returns the number of image files."""
    root.mkdir(parents=True)
    faces = render_set("gray", 10, 1, seed=7, size=128)
    for i, (image, label, subject) in enumerate(
        zip(faces.images, faces.labels, faces.subjects, strict=True)
    ):
        code = JAFFE_SUBJECTS[int(subject.rsplit("s", 1)[1])]
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)  # JAFFE's are 256 px: 128 is faster
        cv2.imwrite(str(root / f"{code}.{JAFFE_CODES[label]}1.{100 + i}.tiff"), grey)
    (root / "KA.HA3.999.tiff").write_bytes(b"")  # half-copied: unreadable
    return len(faces.images) + 1


def fabricate_folder(root: Path) -> None:
    """A folder-per-class dataset with its own class names: happy/ and angry/, files named
    S<subject>_<n>.png (synthetic lab faces, 128 px)."""
    faces = render_set("lab", 6, 2, seed=11, size=128, classes=["happiness", "anger"])
    for i, (image, label, subject) in enumerate(
        zip(faces.images, faces.labels, faces.subjects, strict=True)
    ):
        folder = root / {"happiness": "happy", "anger": "angry"}[label]
        folder.mkdir(parents=True, exist_ok=True)
        n = int(subject.rsplit("s", 1)[1])
        cv2.imwrite(str(folder / f"S{n:02d}_{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A copy of the checkout's code and configs, the README's folders mapped into tmp."""
    tmp = tmp_path_factory.mktemp("walkthrough")
    work = tmp / "fer"
    work.mkdir()
    for name in ("train.py", "prepare.py", "evaluate.py", "sweep.py", "predict.py"):
        shutil.copy(REPO / name, work / name)
    shutil.copytree(REPO / "fer", work / "fer", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "conf", work / "conf")
    # a fresh checkout has no per-machine files (git-ignored)
    (work / "conf/local/default.yaml").unlink(missing_ok=True)
    for site in (work / "conf/hydra/launcher").glob("site*.yaml"):
        site.unlink()
    (work / ".venv").symlink_to(Path(sys.prefix))
    mapping = {"/datasets/": f"{tmp}/datasets/", "/scratch/me/": f"{tmp}/scratch/me/"}
    mapping["/home/me/fer/"] = f"{work}/"
    return work, mapping


def _media(run: Path) -> set[str]:
    """Names of the images logged to the run's W&B runs (train and eval)."""
    return {p.name.rsplit("_", 2)[0] for p in run.rglob("wandb/offline-run-*/files/media/**/*.png")}


def _mapped(text: str, mapping: dict[str, str]) -> str:
    for old, new in mapping.items():
        text = text.replace(old, new)
    return text


@pytest.mark.slow  # ~100 s: kept out of `make test` (10-minute budget)
def test_readme_walkthrough(checkout) -> None:
    work, mapping = checkout
    n_files = fabricate_jaffe(Path(mapping["/datasets/"]) / "jaffe")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "WANDB_MODE": "offline",
        "PYTHONPATH": "",  # the copy's own fer/, as in a user's checkout
    }
    fabricate_folder(Path(mapping["/datasets/"]) / "mine")
    commands = [
        line.split("   #")[0].strip()
        for block in ("commands", "recipes")
        for line in readme_block(block).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    outputs: dict[str, str] = {}
    for command in commands:
        done = subprocess.run(
            _mapped(command, mapping),
            shell=True,
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        outputs[command.split()[0] + " " + command.split()[1]] = done.stdout + done.stderr
        if command.startswith("cp conf/local/example.yaml"):
            # "then edit it as above": the README's block, folders mapped into tmp
            (work / "conf/local/default.yaml").write_text(_mapped(readme_block("local"), mapping))
            (work / "conf/hydra/launcher/site.yaml").write_text(
                _mapped(readme_block("site"), mapping)
            )

    # prepare: Table 1 accounts for every file; the unreadable one is listed with its reason
    prep = work / "outputs/prepare/jaffe-landmarks"
    table = pd.read_csv(prep / "table1.csv")
    assert table["original"].sum() == n_files
    assert (table["processed"] + table["unreadable"] + table["excluded"]).sum() == n_files
    excluded = pd.read_csv(prep / "excluded.csv")
    corrupt = excluded[excluded["path"].str.endswith("KA.HA3.999.tiff")]
    assert corrupt["reason"].str.startswith("unreadable").tolist() == [True]
    assert "KA.HA3.999.tiff" in outputs["cat outputs/prepare/jaffe-landmarks/excluded.csv"]
    assert not (prep / "crops.png").exists()  # JAFFE's licence: no faces shown by default
    # the cache went where conf/local said
    assert list((Path(mapping["/scratch/me/"]) / "fer/cache/preprocess").glob("jaffe-*"))

    # the sanity run, its evaluation, summary, predictions and export
    run = work / RUN
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["epochs"] == 1
    ev = json.loads((run / "eval/last__gradcam__label/jaffe.json").read_text())
    assert ev["subset"] == "val" and ev["size"] == metrics["scores"]["jaffe"]["n"]
    assert ev["scores"]["acc"] == pytest.approx(metrics["scores"]["jaffe"]["acc"])
    assert ev["faces_shown"] is False and not list(run.glob("eval/*/*examples*.png"))
    assert (run / "summary/summary.md").exists() and list((run / "summary").glob("*curves*"))
    predicted = pd.read_csv(run / "predict/jaffe/predictions.csv")
    unusable = pd.read_csv(run / "predict/jaffe/unusable.csv")
    assert len(predicted) + len(unusable) == n_files
    assert any(p.endswith("KA.HA3.999.tiff") for p in unusable["path"])
    assert (run / "export/model.onnx").stat().st_size > 0
    card = json.loads((run / "export/model_card.json").read_text())
    assert card["training_data"]["datasets"] == ["jaffe"]
    assert card["preprocessing"]["method"] == "landmarks"
    # W&B: the offline runs exist and `wandb sync --dry-run` accepted them
    assert list(run.glob("wandb/offline-run-*"))
    # the model card (meant to be shared) names no path of this machine
    for shared in (run / "export/model_card.md", run / "export/model_card.json"):
        assert str(work) not in shared.read_text(), shared
    # JAFFE's licence: no face image in the run's files or its W&B runs (the class-mean map
    # is drawn over a blank face) until the user turns it on
    assert _media(run) == {"class_cams", "confusion"}
    assert sorted(p.name for p in run.glob("eval/*/*.png")) == [
        "jaffe_class_cams.png",
        "jaffe_confusion.png",
    ]
    overrides = [f"runs={run}", "eval.show_faces=true", "eval.force=true"]
    with initialize_config_dir(str(work / "conf"), version_base="1.3"):
        cfg = compose("evaluate", overrides=overrides)
    cwd = Path.cwd()
    try:
        os.chdir(work)  # conf/local's relative output_root, as on the command line
        evaluate(cfg)
    finally:
        os.chdir(cwd)
    assert (run / "eval/last__gradcam__label/jaffe_cam_examples.png").exists()
    assert _media(run) == {"class_cams", "confusion", "examples"}
    # the recipes: a folder dataset with its own class names, and a timm backbone
    table = pd.read_csv(work / "outputs/prepare/folder-landmarks/table1.csv").set_index("class")
    assert table["original"].to_dict() == {"anger": 12, "happiness": 12}
    [timm_run] = [p for p in (work / "outputs/default").iterdir() if p != run]
    assert yaml.safe_load((timm_run / "config.yaml").read_text())["model"]["arch"] == "timm"
    timm_metrics = json.loads((timm_run / "metrics.json").read_text())
    assert timm_metrics["status"] == "finished"
    assert len(timm_metrics["data"]["source"]["val"]["subjects"]) >= 1
    # SLURM: the dry run shows what sbatch would get, from site.yaml
    dry = outputs[".venv/bin/python sweep.py"]
    assert "partition: gpu" in dry and "account: my-account" in dry
    assert "source " + str(work) in dry

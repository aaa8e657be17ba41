"""`python train.py` as a user runs it: errors, multirun, kill and resume (subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.source.n_subjects=10", "data.source.per_class=2", "trainer.enable_progress_bar=false"]


def run_train(tmp: Path, *args: str, check: bool = False, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1"}
    flags = [a for a in args if a.startswith("-")]  # argparse wants flags before overrides
    cmd = [
        sys.executable,
        "train.py",
        *flags,
        f"paths.output_root={tmp / 'outputs'}",
        f"paths.cache_dir={tmp / 'cache'}",
        *(a for a in args if a not in flags),
    ]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=check, **kw)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("model=nope", "Could not find 'model/nope'"),
        ("trainer.max_epoch=3", "Key 'max_epoch' is not in struct"),
        ("split.fold=12", "error: split.fold=12 is out of range: allowed 0..9 (split.k=10)"),
    ],
)
def test_bad_input_one_message_no_traceback(tmp_path, override, needle):
    extra = ["split.k=10"] if override.startswith("split") else []
    res = run_train(tmp_path, override, *extra)
    assert res.returncode != 0
    assert needle in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert not (tmp_path / "cache").exists()  # stopped before any work


def test_multirun_three_folds_with_offline_wandb(tmp_path):
    res = run_train(tmp_path, "-m", "split.fold=0,1,2", "trainer.max_epochs=1", *TINY)
    assert res.returncode == 0, res.stderr[-2000:]
    runs = sorted((tmp_path / "outputs" / "default").glob("*split.fold-*"))
    assert len(runs) == 3
    for i, run in enumerate(runs):
        assert f"split.fold-{i}" in run.name.split("__")
    for run in runs:
        assert json.loads((run / "metrics.json").read_text())["status"] == "finished"
        assert (run / "last.ckpt").exists()
        offline = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(offline) == 1, offline
        record = offline[0].read_bytes()  # protobuf: keys and strings are stored verbatim
        for needle in (b"split_seed", b"max_epochs", b"val/acc", b"train/loss"):
            assert needle in record, needle


def test_kill_after_first_epoch_then_resume(tmp_path):
    args = ["logger=csv", "trainer.max_epochs=2", *TINY]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    cmd = [
        sys.executable,
        "train.py",
        f"paths.output_root={tmp_path / 'outputs'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        *args,
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    run = next(iter([tmp_path / "outputs" / "default"]))
    deadline = time.time() + 120
    last = None
    while time.time() < deadline and proc.poll() is None:
        found = list(run.glob("*/last.ckpt")) if run.exists() else []
        if found:
            last = found[0]
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last is not None, "no last.ckpt appeared"
    assert not (last.parent / "metrics.json").exists()
    assert torch.load(last, weights_only=True)["epoch"] == 0  # killed after epoch 1 of 2

    res = run_train(tmp_path, *args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"resuming from {last}" in res.stdout
    metrics = json.loads((last.parent / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["epochs"] == 2
    for ckpt in last.parent.glob("*.ckpt"):
        torch.load(ckpt, weights_only=True)

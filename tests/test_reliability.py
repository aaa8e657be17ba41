"""Crash consistency and concurrency: kill a sweep anywhere, submit it twice, lock runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fer import locks, runs
from fer.train import train

REPO = Path(__file__).resolve().parents[1]


def _harness(tmp_path: Path, *args: str, tmpdir: str | None = None) -> dict:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "offline"}
    if tmpdir:
        env["TMPDIR"] = tmpdir
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "kill_harness.py"), "--root", str(tmp_path), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_kill_anywhere_twice_loses_nothing(tmp_path):
    """K = 2 kills (seeded points) of a one-run sweep, TMPDIR on /dev/shm (another filesystem
    than the run dir, as on SLURM nodes): the re-run completes it, never retrains a finished
    run, and ends with scores equal to an uninterrupted sweep's."""
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    report = _harness(tmp_path, "--kills", "2", "--seed", "0", tmpdir=shm)
    assert report["kills"] == 2 and len(report["hits"]) == 2
    assert report["complete"] is True
    assert report["retrained_after_finish"] == []
    assert report["differences"] == []


@pytest.mark.slow
def test_kill_anywhere_twenty_times_with_loader_workers(tmp_path):
    """K = 20 kills over rounds of a two-run sweep with 2 DataLoader workers (the
    resume-determinism recipe under worker processes); every kill point is drawn."""
    report = _harness(tmp_path, "--kills", "20", "--runs", "2", "--workers", "2", "--seed", "1")
    print(json.dumps(report, indent=1))
    assert report["kills"] >= 20
    assert set(report["points_hit"]) >= {"training", "checkpoint", "evaluation"}
    assert report["complete"] is True
    assert report["retrained_after_finish"] == []
    assert report["differences"] == []


def test_a_locked_run_is_left_alone(make_cfg, tmp_path):
    """A run directory another live process holds is not trained, checked or written here;
    the sweep sees it as running, with its holder."""
    from fer.sweep import Cell, _train_state

    cfg = make_cfg()
    run_dir = Path(cfg.paths.run_dir)
    with locks.run_lock(run_dir):  # another open file: conflicts like another process
        result = train(cfg)
        assert result["status"] == "locked"
        assert "being trained by another process" in result["reason"]
        assert sorted(p.name for p in run_dir.iterdir()) == [locks.LOCK]
        held = locks.holder(run_dir)
        assert held["pid"] == os.getpid()
        cell = Cell(overrides=[], run_dir=run_dir, resolved={})
        _train_state(cell)
        assert cell.state == "running" and f"pid {os.getpid()}" in cell.detail
    assert locks.holder(run_dir) is None


def test_a_dead_processs_lock_is_not_stale(tmp_path):
    """flock dies with its holder: after SIGKILL the next process takes the run at once."""
    run_dir = tmp_path / "run"
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[2])\n"
        "from fer.locks import run_lock\n"
        "with run_lock(sys.argv[1]):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(run_dir), str(REPO)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    assert locks.holder(run_dir)["pid"] == proc.pid
    with pytest.raises(locks.RunLocked, match=f'"pid": {proc.pid}'), locks.run_lock(run_dir):
        pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert locks.holder(run_dir) is None  # the file is still there, the lock is not
    with locks.run_lock(run_dir):
        assert locks.holder(run_dir)["pid"] == os.getpid()


def test_rank_zero_from_the_launchers_environment(monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(var, raising=False)
    assert locks.is_rank_zero()
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not locks.is_rank_zero()


@pytest.mark.slow
def test_double_submitted_sweep_trains_each_cell_once(tmp_path):
    """Two sweep.py processes on the same study at once: every cell is trained exactly once
    (the other process leaves a held cell alone), and a re-run finds everything finished."""
    extra = tmp_path / "conf_extra" / "study"
    extra.mkdir(parents=True)
    (extra / "toy.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "toy",
                "kind": "arabian2022",
                "datasets": [],
                "stages": [
                    {"name": "train", "script": "train.py", "overrides": [], "grid": ["seed=0,1,2"]}
                ],
            }
        )
    )
    args = [
        sys.executable,
        "sweep.py",
        "study=toy",
        f"hydra.searchpath=[file://{tmp_path / 'conf_extra'}]",
        "sweep.logger=none",
        "sweep.report=false",
        "sweep.extra=['data.source.n_subjects=5','data.source.per_class=1','trainer.max_epochs=2']",
        f"paths.output_root={tmp_path / 'outputs'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    first = subprocess.Popen(args, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    second = subprocess.Popen(args, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    first.communicate(timeout=900)
    second.communicate(timeout=900)
    res = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    root = tmp_path / "outputs" / "toy"
    cells = sorted(p for p in root.iterdir() if (p / runs.CONFIG).exists())
    assert len(cells) == 3
    for cell in cells:
        assert runs.status(cell) == "finished"
        fits = (cell / "train.log").read_text().count("`Trainer.fit` stopped")
        assert fits == 1, f"{cell.name} trained {fits} times"

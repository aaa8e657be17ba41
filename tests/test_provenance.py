"""Provenance per run: git commit and dirty diff, stack, devices, SLURM ids; written by train."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

import fer.loggers
from fer import provenance
from fer.provenance import collect_provenance, wandb_fields, write_provenance
from fer.train import train

REPO = Path(__file__).resolve().parents[1]
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        capture_output=True,
        check=True,
        text=True,
    )
    return out.stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git checkout with one commit (`a.txt`), isolated from any enclosing repository."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "a.txt").write_text("one\n")
    _git(root, "add", "a.txt")
    _git(root, "commit", "-q", "-m", "first")
    return root


@needs_git
def test_clean_checkout_has_commit_and_no_diff(repo, tmp_path):
    prov = collect_provenance(repo)
    assert prov["commit"] == _git(repo, "rev-parse", "HEAD").strip()
    assert prov["dirty"] is False and prov["diff_sha1"] is None
    run = tmp_path / "run"
    written = write_provenance(run, repo=repo)
    assert written["diff_file"] is None and not (run / provenance.PATCH).exists()


@needs_git
def test_dirty_checkout_hashes_and_saves_the_diff(repo, tmp_path):
    (repo / "a.txt").write_text("two\n")
    (repo / "new.txt").write_text("untracked\n")
    prov = collect_provenance(repo)
    assert prov["commit"] == _git(repo, "rev-parse", "HEAD").strip()
    assert prov["dirty"] is True
    diff = _git(repo, "diff", "HEAD", "--binary")
    assert "+two" in diff
    assert prov["diff_sha1"] == hashlib.sha1(diff.encode()).hexdigest()
    assert prov["untracked"] == ["new.txt"] and prov["untracked_count"] == 1

    run = tmp_path / "run"
    written = write_provenance(run, extra={"note": "x"}, repo=repo)
    on_disk = json.loads((run / provenance.PROVENANCE).read_text())
    assert on_disk == json.loads(json.dumps(written))
    assert on_disk["note"] == "x" and "diff" not in on_disk
    assert on_disk["diff_file"] == provenance.PATCH
    patch = (run / provenance.PATCH).read_bytes()
    assert hashlib.sha1(patch).hexdigest() == on_disk["diff_sha1"]
    # the saved patch reproduces the tree from the commit
    _git(repo, "checkout", "--", "a.txt")
    _git(repo, "apply", str(run / provenance.PATCH))
    assert (repo / "a.txt").read_text() == "two\n"


@needs_git
def test_rewritten_run_keeps_earlier_records_and_their_diff(repo, tmp_path):
    run = tmp_path / "run"
    (repo / "a.txt").write_text("two\n")
    first = write_provenance(run, repo=repo)
    (repo / "a.txt").write_text("three\n")  # resumed on other code
    second = write_provenance(run, repo=repo)
    assert second["diff_sha1"] != first["diff_sha1"]
    [old] = second["earlier"]
    assert old["diff_sha1"] == first["diff_sha1"]
    kept = run / old["diff_file"]
    assert kept.name != provenance.PATCH
    assert hashlib.sha1(kept.read_bytes()).hexdigest() == first["diff_sha1"]
    assert "+three" in (run / provenance.PATCH).read_text()


def test_outside_a_checkout_commit_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    plain = tmp_path / "plain"
    plain.mkdir()
    prov = collect_provenance(plain)
    assert prov["commit"] is None and prov["dirty"] is None and prov["diff_sha1"] is None
    written = write_provenance(tmp_path / "run", repo=plain)
    assert written["commit"] is None and not (tmp_path / "run" / provenance.PATCH).exists()


def test_no_git_binary_does_not_fail(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on PATH
    assert collect_provenance(REPO)["commit"] is None


def test_stack_devices_and_slurm_ids(monkeypatch):
    import torch

    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4200")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    monkeypatch.delenv("SLURM_JOB_NODELIST", raising=False)
    prov = collect_provenance(REPO)
    assert prov["slurm"] == {
        "SLURM_JOB_ID": "4242",
        "SLURM_ARRAY_JOB_ID": "4200",
        "SLURM_ARRAY_TASK_ID": "7",
        "SLURM_JOB_NODELIST": None,
    }
    assert prov["packages"]["torch"] == torch.__version__.split("+")[0]
    assert prov["packages"]["lightning"] and prov["packages"]["hydra-core"]
    assert prov["torch"] == torch.__version__ and prov["cuda"] == torch.version.cuda
    assert prov["devices"] and all(isinstance(d, str) and d for d in prov["devices"])
    assert prov["python"] and prov["platform"] and prov["hostname"] and prov["timestamp"]
    flat = wandb_fields(prov)
    assert flat["slurm_job_id"] == "4242" and flat["torch"] == torch.__version__
    assert set(flat) >= {"commit", "dirty", "diff_sha1", "torch", "cuda", "device"}


def test_missing_package_version_is_none():
    versions = provenance.package_versions(("torch", "no-such-distribution-xyz"))
    assert versions["torch"] and versions["no-such-distribution-xyz"] is None


def test_training_run_writes_provenance_and_passes_it_to_the_logger(make_cfg, monkeypatch):
    seen = {}
    build = fer.loggers.build_logger

    def spy(cfg, run_dir, job_type, extra=None, **kw):
        seen[job_type] = dict(extra or {})
        return build(cfg, run_dir, job_type, extra=extra, **kw)

    monkeypatch.setattr(fer.loggers, "build_logger", spy)
    cfg = make_cfg()
    assert train(cfg)["status"] == "finished"
    run = Path(cfg.paths.run_dir)
    prov = json.loads((run / provenance.PROVENANCE).read_text())
    expected = collect_provenance(REPO)["commit"]  # None when not a git checkout
    assert prov["commit"] == expected
    assert prov["packages"]["torch"] and prov["torch"]
    assert (run / provenance.PATCH).exists() == bool(prov["dirty"])
    assert seen["train"]["commit"] == expected
    assert seen["train"]["diff_sha1"] == prov["diff_sha1"]

    # a forced retrain starts a fresh record (no `earlier` from the first one)
    forced = make_cfg("train.force=true")
    assert train(forced)["status"] == "finished"
    assert "earlier" not in json.loads((run / provenance.PROVENANCE).read_text())


def test_portable_config_keeps_no_local_path(tmp_path):
    from fer.provenance import portable_config

    root = tmp_path / "outputs"
    cfg = {
        "paths": {"output_root": str(root), "run_dir": str(root / "study" / "run-1")},
        "data": {"root": "/data/jaffe", "name": "jaffe"},
        "init": {"path": "~/weights/vgg.pth"},
        "eval": {"datasets": ["jaffe", "/mnt/x"]},
        "lr": 0.1,
        "rel": "outputs/x",
    }
    out = portable_config(cfg, root)
    assert out["paths"] == {
        "output_root": "<output_root>/.",
        "run_dir": "<output_root>/study/run-1",
    }
    assert out["data"] == {"root": "<local path>", "name": "jaffe"}
    assert out["init"]["path"] == "<local path>"
    assert out["eval"]["datasets"] == ["jaffe", "<local path>"]
    assert out["lr"] == 0.1 and out["rel"] == "outputs/x"

"""Provenance of a run: code (git commit, dirty diff), software stack, hardware, SLURM job.

`write_provenance(run_dir)` writes `provenance.json` into the run directory (and, when the
checkout has uncommitted changes, the diff itself as `git_diff.patch` beside it, whose sha1 is
`diff_sha1`). Collecting never fails: whatever cannot be read (no git, not a checkout, no GPU)
is None. The data facts (subjects and images of each subset) are in `metrics.json["data"]`.

provenance.json is a record, not a state: "finished" (fer/runs.py) never reads it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from fer.io import atomic_write_json, atomic_write_text, read_json_or_none

PROVENANCE = "provenance.json"
PATCH = "git_diff.patch"
REPO = Path(__file__).resolve().parents[1]

PACKAGES = (
    "torch",
    "torchvision",
    "lightning",
    "torchmetrics",
    "hydra-core",
    "omegaconf",
    "hydra-submitit-launcher",
    "submitit",
    "timm",
    "grad-cam",
    "albumentations",
    "opencv-python-headless",
    "wandb",
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "dlib-bin",
)
SLURM_VARS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_NODELIST")
MAX_UNTRACKED = 100  # untracked files listed in provenance.json (their count is always given)


def _git(repo: Path, *args: str) -> str | None:
    """stdout of `git -C repo ARGS`, or None when git is missing, fails or hangs."""
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            timeout=30,
            check=False,
            env={**os.environ, "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.decode("utf-8", errors="replace")


def git_state(repo: Path = REPO) -> dict[str, Any]:
    """Commit, branch, dirty flag, the diff against HEAD (text) and its sha1, untracked files.

    `dirty` means tracked files differ from HEAD (staged or not): exactly when `diff` is
    non-empty, so `diff_sha1` is None iff the tree is clean. Untracked files are not in the
    diff; they are listed (first MAX_UNTRACKED) with their count.
    """
    commit = _git(repo, "rev-parse", "HEAD")
    if commit is None:
        return {
            "commit": None,
            "branch": None,
            "dirty": None,
            "diff_sha1": None,
            "diff": None,
            "untracked": None,
            "untracked_count": None,
        }
    # --binary: a changed binary file is in the patch too (it applies with `git apply`).
    diff = _git(repo, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff") or ""
    others = _git(repo, "ls-files", "--others", "--exclude-standard")
    untracked = others.splitlines() if others is not None else []
    branch = _git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    return {
        "commit": commit.strip(),
        "branch": branch.strip() if branch else None,
        "dirty": bool(diff),
        "diff_sha1": hashlib.sha1(diff.encode()).hexdigest() if diff else None,
        "diff": diff or None,
        "untracked": untracked[:MAX_UNTRACKED],
        "untracked_count": len(untracked),
    }


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None when it is not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str | None:
    """The CPU's model name (/proc/cpuinfo on Linux, else platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def torch_stack() -> dict[str, Any]:
    """torch version, its CUDA and cuDNN versions, and the visible CUDA devices' names."""
    out: dict[str, Any] = {"torch": None, "cuda": None, "cudnn": None, "cuda_devices": []}
    try:
        import torch
    except Exception:  # a broken install is recorded, not raised
        return out
    out["torch"] = str(torch.__version__)
    out["cuda"] = torch.version.cuda
    try:
        out["cudnn"] = (
            torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        )
    except Exception:
        out["cudnn"] = None
    try:
        if torch.cuda.is_available():
            out["cuda_devices"] = [
                torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
            ]
    except Exception:  # driver trouble: no device names
        out["cuda_devices"] = []
    return out


def collect_provenance(repo: Path = REPO) -> dict[str, Any]:
    """Everything that identifies how a run was produced (never raises).

    Keys: commit, branch, dirty, diff_sha1, untracked, untracked_count, diff (the text; left
    out of provenance.json by write_provenance, which saves it as a patch), packages, python,
    platform, torch, cuda, cudnn, devices (CUDA device names, else the CPU model), cpu,
    cpu_count, slurm (SLURM_* ids, None when unset), hostname, repo, timestamp.
    """
    from fer.runs import now

    stack = torch_stack()
    cpu = cpu_model()
    return {
        **git_state(repo),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": stack["torch"],
        "cuda": stack["cuda"],
        "cudnn": stack["cudnn"],
        "devices": stack["cuda_devices"] or ([cpu] if cpu else []),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "slurm": {k: os.environ.get(k) for k in SLURM_VARS},
        "hostname": socket.gethostname(),
        "repo": str(repo),
        "timestamp": now(),
    }


def portable_config(config: Any, output_root: str | Path) -> Any:
    """The resolved config as loggers (W&B, CSV's hparams.yaml) receive it: absolute paths
    under the output root become `<output_root>/...`, other absolute paths (dataset roots,
    caches, home folders) `<local path>`. Shared runs then carry no user's file system; the
    run's own config.yaml keeps the real paths."""
    root = Path(output_root).expanduser().absolute()

    def scrub(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [scrub(v) for v in value]
        if isinstance(value, str) and value.startswith(("/", "~")):
            path = Path(value).expanduser()
            try:
                return f"<output_root>/{path.relative_to(root).as_posix()}"
            except ValueError:
                return "<local path>"
        return value

    return scrub(config)


def wandb_fields(prov: Mapping[str, Any]) -> dict[str, Any]:
    """The flat keys a run's W&B config carries from its provenance."""
    devices = prov.get("devices") or []
    return {
        "commit": prov.get("commit"),
        "dirty": prov.get("dirty"),
        "diff_sha1": prov.get("diff_sha1"),
        "torch": prov.get("torch"),
        "cuda": prov.get("cuda"),
        "device": ", ".join(str(d) for d in devices) or None,
        "slurm_job_id": (prov.get("slurm") or {}).get("SLURM_JOB_ID"),
    }


def write_provenance(
    run_dir: str | Path, extra: Mapping[str, Any] | None = None, repo: Path = REPO
) -> dict[str, Any]:
    """Write `<run_dir>/provenance.json` (and `git_diff.patch` when the tree is dirty).

    `extra` (the caller's facts, e.g. data identity) is merged in last. A run directory that
    already holds a provenance.json (a resumed run) keeps the earlier records under
    `earlier`, oldest first, so a resume on another commit or machine is visible; the patch
    is the current diff; an earlier attempt's different one is kept as
    `git_diff.<sha1 prefix>.patch` (named in its record's `diff_file`).
    Returns the record as written.
    """
    run_dir = Path(run_dir)
    prov = collect_provenance(repo)
    diff = prov.pop("diff")
    prov["diff_file"] = PATCH if diff else None
    prov.update(extra or {})
    old = read_json_or_none(run_dir / PROVENANCE)
    if isinstance(old, dict):
        earlier = old.pop("earlier", None)
        _keep_old_patch(run_dir, old, prov["diff_sha1"])
        prov["earlier"] = [*(earlier if isinstance(earlier, list) else []), old]
    if diff:
        atomic_write_text(run_dir / PATCH, diff)
    else:
        (run_dir / PATCH).unlink(missing_ok=True)
    atomic_write_json(run_dir / PROVENANCE, prov)
    return prov


def _keep_old_patch(run_dir: Path, old: dict[str, Any], new_sha1: str | None) -> None:
    """An earlier attempt's different diff moves to `git_diff.<sha1 prefix>.patch`."""
    sha1, patch = old.get("diff_sha1"), run_dir / PATCH
    if old.get("diff_file") != PATCH or not sha1 or sha1 == new_sha1 or not patch.exists():
        return
    kept = f"git_diff.{str(sha1)[:12]}.patch"
    patch.replace(run_dir / kept)
    old["diff_file"] = kept

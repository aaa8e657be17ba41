"""Run directories: the resolved config, "finished", failures (DESIGN.md "Finished")."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml

from fer.errors import RunStateError
from fer.io import atomic_write_json, atomic_write_text, read_json_or_none
from fer.naming import is_non_result_key

CONFIG = "config.yaml"
METRICS = "metrics.json"


def now() -> str:
    """UTC timestamp for run records."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}` (lists stay values)."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def _off(value: Any) -> bool:
    return value in (None, False, "none") or value == [] or value == {}


def config_diff(old: dict, new: dict) -> list[str]:
    """Keys whose values differ between two resolved configs, ignoring non-result keys and
    options added since the old run whose new value is off (`false`, `null`, empty): a new
    switch, off by default, does not make every earlier run "changed"."""
    a, b = flatten(old), flatten(new)
    return sorted(
        k
        for k in set(a) | set(b)
        if not is_non_result_key(k)
        and a.get(k, "<absent>") != b.get(k, "<absent>")
        and not (k not in a and _off(b[k]))
    )


def read_config(run_dir: str | Path) -> dict | None:
    """The run's own resolved config, or None when it has not started training."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        return None
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise RunStateError(
            f"{path} is not valid YAML ({str(e).splitlines()[0]}); it is the run's own config: "
            "restore it, or retrain with train.force=true"
        ) from None
    if not isinstance(config, dict):
        raise RunStateError(f"{path}: expected the run's resolved config (a mapping)")
    return config


def ensure_config(run_dir: str | Path, resolved: dict) -> None:
    """Write `config.yaml` once; on a re-run refuse when a result-changing key differs."""
    old = read_config(run_dir)
    if old is None:
        atomic_write_text(Path(run_dir) / CONFIG, yaml.safe_dump(resolved, sort_keys=False))
        return
    diff = config_diff(old, resolved)
    if diff:
        raise RunStateError(
            f"{run_dir} was trained with a different config (keys: {', '.join(diff)}); "
            "use a new override/name, or train.force=true to retrain it"
        )


def status(run_dir: str | Path) -> str | None:
    """`finished`, `failed`, or None (never started / in progress / corrupt metrics.json)."""
    metrics = read_json_or_none(Path(run_dir) / METRICS)
    return metrics.get("status") if isinstance(metrics, dict) else None


def is_finished(run_dir: str | Path, resolved: dict) -> bool:
    """Finished iff metrics.json says so *and* the stored config equals the new one."""
    if status(run_dir) != "finished":
        return False
    ensure_config(run_dir, resolved)  # raises on a changed config: never reported stale
    return True


def write_metrics(run_dir: str | Path, metrics: dict) -> Path:
    """Write `metrics.json` atomically (the last file a finished run writes)."""
    return atomic_write_json(Path(run_dir) / METRICS, metrics)


def write_failure(run_dir: str | Path, reason: str) -> Path:
    """Record a user error of one multirun job (the sweep goes on; sweep.py lists it)."""
    return write_metrics(run_dir, {"status": "failed", "reason": reason, "at": now()})


def read_json_metrics(run_dir: str | Path) -> dict:
    """metrics.json of a run (empty dict when missing or corrupt)."""
    return read_json_or_none(Path(run_dir) / METRICS) or {}


#: The key an evaluation JSON stamps with the `finished_at` of the training it evaluated.
EVALUATED = "run_finished_at"


def evaluation_is_current(result: object, metrics: dict) -> bool:
    """An evaluation JSON counts only for the training it evaluated: its `run_finished_at`
    equals the run's metrics.json `finished_at`. A run retrained since (`train.force=true`), or
    an evaluation written before the stamp existed (older CAM placement), is evaluated again."""
    return (
        isinstance(result, dict)
        and result.get(EVALUATED) is not None
        and result.get(EVALUATED) == metrics.get("finished_at")
    )


def trained_subjects(data: dict) -> dict[str, set[str]]:
    """Dataset name -> subjects a run trained on, from its `metrics.json["data"]` record."""
    out: dict[str, set[str]] = {}
    train_on = data.get("train_on", "source")
    roles = ["source", "target"] if train_on == "both" else [train_on]
    for role in roles:
        part = data.get(role)
        if part and part.get("train"):
            out.setdefault(part["name"], set()).update(s for s in part["train"]["subjects"] if s)
    return out


def lineage_trained_subjects(run_dir: str | Path, config: dict) -> dict[str, set[str]]:
    """Subjects the run *and* its init checkpoint's run trained on (followed back through
    `init.path` while the checkpoint sits in a run directory with a finished metrics.json)."""
    out: dict[str, set[str]] = {}
    seen: set[Path] = set()
    run, cfg = Path(run_dir), config
    while run not in seen:
        seen.add(run)
        metrics = read_json_metrics(run)
        for name, subjects in trained_subjects(metrics.get("data") or {}).items():
            out.setdefault(name, set()).update(subjects)
        init_path = ((cfg or {}).get("init") or {}).get("path")
        if not init_path or not (Path(init_path).parent / METRICS).exists():
            break
        run = Path(init_path).parent
        cfg = read_config(run) or {}
    return out


def check_not_trained_on(scored: dict[str, set[str]], trained: dict[str, set[str]]) -> None:
    """Refuse to score a dataset on subjects the run or its init checkpoint trained on."""
    for name, subjects in scored.items():
        leak = sorted(subjects & trained.get(name, set()))
        if leak:
            shown = ", ".join(leak[:5]) + (" ..." if len(leak) > 5 else "")
            raise RunStateError(
                f"{name}: would score {len(leak)} subject(s) the run or its init checkpoint "
                f"trained on ({shown}); scores must come from unseen subjects"
            )

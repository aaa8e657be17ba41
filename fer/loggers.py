"""Experiment loggers from the `logger` config group (W&B offline by default, CSV, none)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from fer.naming import wandb_id


def grid_keys(cfg: DictConfig) -> dict[str, Any]:
    """The flat keys every W&B run logs, so training and evaluation runs join in tables."""
    split = cfg.get("split") or {}
    return {
        "model": cfg.model.name,
        "init": cfg.init.name,
        "fold": split.get("fold"),
        "strategy": (cfg.get("strategy") or {}).get("name"),
        "source": cfg.data.name,
        "target": (cfg.get("target") or {}).get("name"),
        "fraction": split.get("target_fraction"),
        "seed": cfg.seed,
        "split_seed": split.get("seed"),
    }


def build_logger(
    cfg: DictConfig,
    run_dir: Path,
    job_type: str,
    extra: Mapping[str, Any] | None = None,
    key: str | None = None,
    save_dir: Path | None = None,
) -> Any | None:
    """Instantiate `cfg.logger` for one job; None when `logger=none`.

    `key` tells apart several jobs of one type on a run (an evaluation per eval-key gets its
    own W&B run id); files go to `save_dir` (default: the run directory).
    """
    if not cfg.get("logger") or "_target_" not in cfg.logger:
        return None
    target = str(cfg.logger._target_)
    if target.endswith("WandbLogger"):
        os.environ.setdefault("WANDB_MODE", "offline")  # never require a login
        os.environ.setdefault("WANDB_SILENT", "true")
        name, run = str(cfg.name), run_dir.name
        # `config` is also instantiate()'s own first parameter: finish a partial instead.
        make = instantiate(cfg.logger, _partial_=True)
        return make(
            name=run,
            id=wandb_id(name, run, job_type if key is None else f"{job_type}/{key}"),
            group=name,
            job_type=job_type,
            save_dir=str(save_dir or run_dir),
            resume="allow",
            config={**grid_keys(cfg), **(extra or {})},
        )
    return instantiate(cfg.logger, save_dir=str(save_dir or run_dir))


def finish_wandb(exit_code: int) -> None:
    """Finish the job's W&B run, if one is open (a failed job shows as failed)."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)

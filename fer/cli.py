"""Shared entrypoint behaviour: one-line user errors, failures recorded in multiruns."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from fer.errors import FerError

log = logging.getLogger("fer")


def in_multirun() -> bool:
    """True inside a Hydra multirun job (where `sys.exit` would end the whole sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_job(task: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run `task(cfg)`; a FerError ends a single run with its message (no traceback), and is
    recorded as `"status": "failed"` in a multirun job, which then returns."""
    _quiet_warnings()
    try:
        return task(cfg)
    except FerError as e:
        if in_multirun():
            from fer.runs import write_failure

            log.error("job failed: %s", e)
            write_failure(Path(cfg.paths.run_dir), str(e))
            return None
        sys.exit(f"error: {e}")


def _quiet_warnings() -> None:
    """Warnings that say nothing to a user of this repository."""
    import warnings

    warnings.filterwarnings("ignore", message=r".*exists and is not empty.*")  # config.yaml is ours
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated.*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


def quiet_lightning() -> None:
    """One copy of each message: Lightning's own console handlers duplicate Hydra's logging
    (whose handlers also write the run's log file). Call after importing Lightning; does
    nothing outside a Hydra job, where Lightning's handlers are the only ones."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith("lightning"):
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                logger.removeHandler(handler)

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
    except Exception as e:
        if in_multirun():
            # One cell's failure (a user error, or a crash such as out-of-memory) must not end
            # the sweep: record it in the run dir, where sweep.py lists it, and go on.
            from fer.runs import write_failure

            reason = str(e) if isinstance(e, FerError) else f"{type(e).__name__}: {e}"
            log.error("job failed: %s", reason, exc_info=not isinstance(e, FerError))
            run_dir = (cfg.get("paths") or {}).get("run_dir")
            if run_dir:
                write_failure(Path(run_dir), reason)
            return None
        if isinstance(e, FerError):
            sys.exit(f"error: {e}")
        raise


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

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
    try:
        return task(cfg)
    except FerError as e:
        if in_multirun():
            from fer.runs import write_failure

            log.error("job failed: %s", e)
            write_failure(Path(cfg.paths.run_dir), str(e))
            return None
        sys.exit(f"error: {e}")

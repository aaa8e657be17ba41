"""Shared entrypoint behaviour: one-line user errors, failures recorded in multiruns."""

from __future__ import annotations

import errno
import logging
import re
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


#: OS errors of the machine, not of our code: a folder that cannot be written, a full disk.
ENVIRONMENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})


def user_message(e: BaseException) -> str | None:
    """The one-line message of an error the user or the machine caused: our own FerError, a
    write refused by the OS (permissions, read-only or full disk), a trainer setting Lightning
    refuses (`trainer.accelerator=gpu` without a GPU). None for anything else: a bug, whose
    traceback is wanted."""
    if isinstance(e, FerError):
        return str(e)
    if type(e).__name__ == "InstantiationException" and isinstance(e.__cause__, FerError):
        return str(e.__cause__)  # our check raised inside a constructor Hydra instantiated
    if isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS:
        if e.filename:
            return (
                f"{e.filename}: {e.strerror} (check the free space and permissions there, or "
                "point paths.output_root / paths.cache_dir / out= elsewhere)"
            )
        return (
            f"{e.strerror or e} while writing a file (check the free space and permissions of "
            "paths.output_root, paths.cache_dir or out=)"
        )
    for exc in (e, e.__cause__):
        if type(exc).__name__ == "MisconfigurationException":  # Lightning's own settings check
            key = re.search(r"full_key: (\S+)", str(e))
            return f"{key[1] if key else 'trainer'}: {exc} (Lightning refused this setting)"
    return None


def run_job(task: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run `task(cfg)`; a user error (`user_message`) ends a single run with its message (no
    traceback), and is recorded as `"status": "failed"` in a multirun job, which then returns."""
    _quiet_warnings()
    try:
        return task(cfg)
    except Exception as e:
        message = user_message(e)
        if in_multirun():
            # One cell's failure (a user error, or a crash such as out-of-memory) must not end
            # the sweep: record it in the run dir, where sweep.py lists it, and go on.
            from fer.runs import write_failure

            reason = message or f"{type(e).__name__}: {e}"
            log.error("job failed: %s", reason, exc_info=message is None)
            run_dir = (cfg.get("paths") or {}).get("run_dir")
            if run_dir:
                write_failure(Path(run_dir), reason)
            return None
        if message is not None:
            sys.exit(f"error: {message}")
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

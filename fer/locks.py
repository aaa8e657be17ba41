"""One process per run directory: an advisory lock on `<run>/.lock`.

`fcntl.flock` is released by the kernel when its holder dies (SIGKILL, OOM, preemption), so a
lock left by a dead process is never stale: the next process simply gets it. On NFS, Linux
emulates `flock` with POSIX byte-range locks, which the lock manager keeps consistent across
nodes (SLURM's shared filesystems). The file holds the holder's host, pid and start time, only
to say who has it.

Under DDP every rank re-runs the entrypoint; only rank 0 locks (`is_rank_zero`), decided from
the launcher's environment before any Trainer exists.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from fer.errors import FerError

LOCK = ".lock"


class RunLocked(FerError):
    """Another live process holds the run directory."""


def is_rank_zero() -> bool:
    """False in the extra processes of a distributed launch (Lightning's DDP, torchrun,
    SLURM tasks), which must not lock, check or write what rank 0 does."""
    for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        value = os.environ.get(var)
        if value not in (None, "") and int(value) != 0:
            return False
    return True


def holder(run_dir: str | Path) -> dict | None:
    """Who holds the run's lock now (host, pid, since), or None when nobody does."""
    path = Path(run_dir) / LOCK
    if not path.exists():
        return None
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            try:
                return json.loads(f.read() or "{}")
            except json.JSONDecodeError:
                return {}
        fcntl.flock(f, fcntl.LOCK_UN)
        return None


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold `<run_dir>/.lock` for the block; RunLocked when a live process holds it."""
    from fer.runs import now

    path = Path(run_dir) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 - held open for the whole block
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise RunLocked(
                f"{run_dir} is being trained by another process ({f.read().strip() or '?'}); "
                "it was left alone"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": now()}))
        f.flush()
        yield
    finally:
        f.close()  # closing releases the lock

"""Checkpoint files: atomic saves beside the target, validated loads with clear errors."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from fer.errors import DataError
from fer.io import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes `<path>` via a temp file in the same directory, fsync and `os.replace`.

    Lightning's own save moves a `mkstemp()` file into place, which is a plain copy when
    `$TMPDIR` is on another filesystem (SLURM nodes): a kill mid-copy leaves a torn file.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        atomic_write(path, lambda f: torch.save(checkpoint, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """`torch.load(weights_only=True)` on CPU; a truncated or empty file raises DataError."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: checkpoint not found") from None
    except pickle.UnpicklingError as e:  # pickled objects (nothing ran) or not a torch file
        from fer.models.init import refused_load

        raise refused_load(path, e) from None
    except KeyError as e:  # a text file: torch's zip reader finds no record
        from fer.models.init import refused_load

        raise refused_load(path, e) from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        first = (str(e).strip().splitlines() or ["empty file"])[0]
        raise DataError(f"{path}: unreadable checkpoint ({first})") from None


def save_weights_only(src: str | Path, dst: str | Path) -> Path:
    """Rewrite a training checkpoint without optimizer/scheduler state (for finished runs)."""
    ckpt = load_checkpoint(src)
    for key in ("optimizer_states", "lr_schedulers"):
        ckpt.pop(key, None)
    return atomic_write(dst, lambda f: torch.save(ckpt, f))

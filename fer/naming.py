"""Run names: one rule for every run directory and W&B id (DESIGN.md "Names").

Importing this module registers the OmegaConf resolver ``fer_run_name`` that the Hydra configs
use as ``hydra.run.dir: outputs/${name}/${fer_run_name:${hydra:overrides.task}}``. It imports
nothing heavy, so entrypoints can import it before Hydra composes the config.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from omegaconf import OmegaConf

#: Override keys that never change a run's result; excluded by *prefix* (Hydra's own
#: ``override_dirname.exclude_keys`` matches exact keys only). ``name`` is already the parent
#: directory. The same prefixes decide which keys a changed config may differ in.
NON_RESULT_PREFIXES: tuple[str, ...] = (
    "name",
    "logger",
    "hydra",
    "launcher",
    "paths",
    "eval",
    "train.force",
    "train.threads",
    "local",
    "datamodule.num_workers",
    "trainer.enable_progress_bar",
    "callbacks.checkpoint.dirpath",  # the run dir itself: moving outputs/ changes no result
    "callbacks.last.dirpath",
)

_SAFE = re.compile(r"^[A-Za-z0-9._+-]+$")
_MAX_VALUE = 40
MAX_NAME = 200  # a run directory name, well under the usual 255-byte limit


def short_hash(text: str, n: int = 8) -> str:
    """A short, stable hex digest of `text`."""
    return hashlib.sha1(text.encode()).hexdigest()[:n]


def code_hash(*modules: ModuleType) -> str:
    """A short digest of the modules' source files. Rendered data sets are keyed by it beside
    their parameters, so an edited renderer draws anew instead of reusing stale images."""
    digest = hashlib.sha1()
    for module in modules:
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:8]


def _bare_key(key: str) -> str:
    return key.lstrip("+~")


def is_non_result_key(key: str) -> bool:
    """True when `key` (an override key or dotted config path) cannot change a run's result."""
    key = _bare_key(key).replace("/", ".").replace("@", ".")
    return any(key == p or key.startswith(p + ".") for p in NON_RESULT_PREFIXES)


def _sanitise(text: str) -> str:
    if _SAFE.match(text) and len(text) <= _MAX_VALUE:
        return text
    # A readable stem plus a hash of the original, so `a/b` and `a_b` never collide.
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_")[:20]
    return f"{stem}-{short_hash(text)}" if stem else short_hash(text)


def run_name(overrides: Iterable[str]) -> str:
    """Directory name of a job from its task overrides (sorted ``key-value`` joined by ``__``).

    Overrides of keys that do not change the result are dropped; the result only contains
    characters that a shell and a Hydra override both accept unquoted. ``run`` when empty.
    """
    pairs = []
    for item in overrides:
        item = str(item)
        key, sep, value = item.partition("=")
        if not sep or key.startswith("~") or is_non_result_key(key):
            continue
        key = _bare_key(key)
        pairs.append(f"{_sanitise(key.replace('/', '.').replace('@', '.'))}-{_sanitise(value)}")
    name = "__".join(sorted(pairs)) or "run"
    if len(name) > MAX_NAME:
        # Filesystems refuse names over 255 bytes: a readable head plus a hash of the whole.
        name = f"{name[: MAX_NAME - 18].rstrip('_')}__{short_hash(name, 16)}"
    return name


def wandb_id(name: str, run: str, job_type: str) -> str:
    """W&B run id: W&B ids refuse ``:;,#?/'``, so hash ``<name>/<run>/<job_type>``."""
    return short_hash(f"{name}/{run}/{job_type}", 16)


def _resolver(overrides: object) -> str:
    if overrides is None:
        return "run"
    if isinstance(overrides, str):
        overrides = [overrides] if overrides else []
    return run_name(list(overrides))  # type: ignore[arg-type]


OmegaConf.register_new_resolver("fer_run_name", _resolver, replace=True)

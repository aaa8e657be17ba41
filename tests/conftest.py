"""Shared fixtures: the real Hydra config, composed and shrunk for CPU tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

import fer.naming  # noqa: F401  (resolver used by the configs)

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache dir per session: small synthetic sets render once and are reused."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_cfg(tmp_path: Path, synthetic_cache: Path) -> Callable[..., DictConfig]:
    """Compose `train.yaml` with overrides, then shrink it: tiny data, CPU, no logger."""

    def _make(*overrides: str, run_dir: Path | None = None, tiny: bool = True) -> DictConfig:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=["logger=none", *overrides])
        with open_dict(cfg):
            cfg.paths.run_dir = str(run_dir or tmp_path / "run")
            cfg.paths.cache_dir = str(synthetic_cache)
            cfg.trainer.enable_progress_bar = False
            if tiny:
                cfg.data.source.n_subjects = 10
                cfg.data.source.per_class = 2
                cfg.trainer.max_epochs = 1
        return cfg

    return _make


def train_tiny_run(root: Path, epochs: int = 1) -> tuple[Path, Path]:
    """Train a tiny synthetic run under `root` (10 subjects, 2 faces per class, no logger);
    returns its run directory (`root/outputs/default/run`) and cache directory."""
    from fer.train import train

    cache = root / "cache"
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "logger=none",
                f"paths.cache_dir={cache}",
                "data.source.n_subjects=10",
                "data.source.per_class=2",
                f"trainer.max_epochs={epochs}",
                "trainer.enable_progress_bar=false",
            ],
        )
    with open_dict(cfg):
        cfg.paths.run_dir = str(root / "outputs" / "default" / "run")
    train(cfg)
    return Path(cfg.paths.run_dir), cache


def fit_lightning(cfg: DictConfig, max_epochs: int, ckpt_path: str | None = None, **trainer_kw):
    """Lightning fit with the run's own datamodule, module and checkpoint callbacks, but no
    entrypoint around it (so a test can stop between epochs and resume). Returns
    (datamodule, module, trainer)."""
    import lightning as L
    from hydra.utils import instantiate

    from fer.checkpoint_io import AtomicCheckpointIO
    from fer.models.build import build_model
    from fer.module import FERClassifier
    from fer.train import make_datamodule

    L.seed_everything(0, workers=True, verbose=False)
    dm = make_datamodule(cfg)
    module = FERClassifier(
        build_model(cfg.model, cfg.init, len(cfg.classes)),
        cfg.classes,
        optimizer=instantiate(cfg.optimizer),
        seed=0,
    )
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=cfg.paths.run_dir,
        callbacks=[instantiate(c) for c in cfg.callbacks.values() if c],
        plugins=[AtomicCheckpointIO()],
        **trainer_kw,
    )
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return dm, module, trainer

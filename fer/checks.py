"""Start-up checks of a composed config: cheap, run before any heavy import or work."""

from __future__ import annotations

from omegaconf import DictConfig

from fer.data.splits import check_kfold_keys
from fer.errors import ConfigError
from fer.labels import check_classes


def check_train_config(cfg: DictConfig) -> None:
    """Raise ConfigError naming the key for values Hydra's schema cannot catch."""
    check_classes(cfg.classes, "classes")
    if cfg.split.name == "kfold":
        check_kfold_keys(cfg.split.k, cfg.split.fold, cfg.split.get("group_by", "subject"))
    keep = cfg.train.keep_checkpoints
    if keep not in ("reported", "all"):
        raise ConfigError(f"train.keep_checkpoints={keep!r}: allowed reported | all")
    if cfg.eval.checkpoint not in ("last", "best"):
        raise ConfigError(f"eval.checkpoint={cfg.eval.checkpoint!r}: allowed last | best")
    if int(cfg.trainer.max_epochs) < 1:
        raise ConfigError(f"trainer.max_epochs={cfg.trainer.max_epochs}: must be >= 1")

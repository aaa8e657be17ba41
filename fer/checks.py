"""Start-up checks of a composed config: cheap, run before any heavy import or work.

Every problem found is reported together in one message, so a user fixes them in one go.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fer.data.splits import check_holdout_keys, check_kfold_keys
from fer.errors import ConfigError, FerError
from fer.labels import check_classes

#: Strategies that fine-tune part of a network: pointless from random weights.
FINE_TUNING = ("fc", "fc_conv")

#: Keys that must hold an integer, with their smallest allowed value: a typo here (seed=abc)
#: would otherwise end in a traceback from int() or from torch deep inside training.
INTEGER_KEYS = {
    "seed": 0,
    "split.seed": 0,
    "trainer.max_epochs": 1,
    "datamodule.batch_size": 1,
    "datamodule.eval_batch_size": 1,
    "datamodule.num_workers": 0,
    "model.input.size": 1,
    "model.input.channels": 1,
}


def _number_problems(cfg: DictConfig) -> list[str]:
    """Integer keys that hold something else, or too small a value; a non-numeric or
    non-positive `optimizer.lr`."""
    problems = []
    for key, low in INTEGER_KEYS.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{key}={value!r}: expected an integer >= {low}")
        elif value < low:
            problems.append(f"{key}={value}: must be >= {low}")
    lr = OmegaConf.select(cfg, "optimizer.lr", default=None)
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0):
        problems.append(f"optimizer.lr={lr!r}: expected a positive number")
    return problems


def _problems(cfg: DictConfig) -> list[str]:
    problems: list[str] = []

    def check(fn, *args) -> None:
        try:
            fn(*args)
        except FerError as e:
            problems.append(str(e))

    check(check_classes, cfg.classes, "classes")
    split = cfg.split
    if split.name == "kfold":
        check(check_kfold_keys, split.k, split.fold, split.get("group_by", "subject"))
    elif split.name == "holdout":
        for role in ("data", "target"):
            node = cfg.get(role)
            if node and not node.get("official_split"):
                check(
                    check_holdout_keys,
                    node.get("split_shares"),
                    split.get("target_fraction", 1.0),
                    f"{role}.split_shares",
                )
    if cfg.get("target") and split.name != "holdout":
        problems.append(
            "a target dataset (data@target) needs split=holdout "
            "(subject-disjoint train/val/test on each dataset)"
        )
    keep = cfg.train.keep_checkpoints
    if keep not in ("reported", "all"):
        problems.append(f"train.keep_checkpoints={keep!r}: allowed reported | all")
    if cfg.eval.checkpoint not in ("last", "best"):
        problems.append(f"eval.checkpoint={cfg.eval.checkpoint!r}: allowed last | best")
    problems.extend(_number_problems(cfg))
    strategy, init = cfg.strategy.name, cfg.init.name
    if strategy in FINE_TUNING and init == "glorot":
        problems.append(
            f"strategy={strategy} fine-tunes a pretrained model but init=glorot "
            "gives random weights: use init=checkpoint|imagenet|synthetic_pretrain"
        )
    if cfg.strategy.get("train_on") in ("target", "both") and not cfg.get("target"):
        problems.append(f"strategy={strategy} trains on a target dataset: add data@target=<name>")
    for role in ("data", "target"):
        node = cfg.get(role)
        # `"root" in node` is False for a missing (???) value; keys() lists it
        if node is None or "root" not in node.keys():  # noqa: SIM118
            continue
        if OmegaConf.is_missing(node, "root") or node.root is None:
            problems.append(
                f"{role}.root is not set for {node.name}: set it in "
                f"conf/local/default.yaml or on the command line ({role}.root=<dir>)"
            )
        elif not Path(str(node.root)).expanduser().is_dir():
            what = (
                "is a file" if Path(str(node.root)).expanduser().exists() else "no such directory"
            )
            problems.append(f"{role}.root={node.root}: {what}; expected the folder of {node.name}")
    try:
        from fer.models.checks import check_init, check_model
    except ImportError:
        pass
    else:
        problems.extend(check_init(cfg.init, cfg.model))
        problems.extend(check_model(cfg.model))
    return problems


def check_train_config(cfg: DictConfig) -> None:
    """Raise one ConfigError listing every problem Hydra's schema cannot catch."""
    problems = _problems(cfg)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError("the config has problems:\n  - " + "\n  - ".join(problems))

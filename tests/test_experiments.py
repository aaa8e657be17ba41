"""Every experiment preset composes; a `-m strategy=...` sweep composes valid runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import fer.naming  # noqa: F401

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def _compose(*overrides: str, hydra: bool = False):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes(name):
    cfg = _compose(f"experiment={name}")
    assert cfg.name in {
        "arabian2022",
        "arabian2022_synthetic",
        "tannugi",
        "tannugi_synthetic",
        "pretrain",
        "validity_cue",
    }
    assert cfg.eval.checkpoint == ("best" if name.startswith("tannugi") else "last")
    OmegaConf.to_container(cfg.model, resolve=True)


@pytest.mark.parametrize(
    ("strategy", "init"),
    [("fc", "checkpoint"), ("fc_conv", "checkpoint"), ("full", "checkpoint"), ("fusion", "glorot")],
)
def test_tannugi_strategy_sweep_composes(strategy, init):
    cfg = _compose("experiment=tannugi_synthetic", f"strategy={strategy}")
    assert cfg.init.name == init
    assert cfg.target.name == "synthetic_gray" and cfg.data.name == "synthetic_lab"
    assert cfg.split.name == "holdout"


def test_adapted_runs_find_the_source_run_by_name():
    source = _compose("experiment=tannugi_synthetic_source", hydra=True)
    adapted = _compose("experiment=tannugi_synthetic", "strategy=fc")
    assert Path(adapted.init.path) == Path(source.hydra.run.dir) / "best.ckpt"
    assert Path(source.hydra.run.dir).name == "source-synthetic_lab__seed-0__split-0"

"""Training in-process on tiny synthetic data: finish, skip, refuse, force, resume exactly."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import fit_lightning
from omegaconf import open_dict

from fer.errors import ConfigError, RunStateError
from fer.models.backbones import small_vgg
from fer.models.init import glorot_
from fer.train import train


def test_training_step_lowers_loss_on_fixed_batch():
    torch.manual_seed(0)
    net = glorot_(small_vgg(6))
    x, y = torch.randn(16, 1, 48, 48), torch.arange(16) % 6
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def loss() -> float:
        net.eval()
        with torch.no_grad():
            return F.cross_entropy(net(x), y).item()

    losses = [loss()]
    for _ in range(10):
        net.train()
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        losses.append(loss())
    assert all(b < a for a, b in itertools.pairwise(losses))  # every step lowers it
    assert losses[-1] < losses[0] - 0.1


def test_train_finishes_then_skips_refuses_and_forces(make_cfg, tmp_path, capsys):
    cfg = make_cfg()
    metrics = train(cfg)
    run = Path(cfg.paths.run_dir)
    assert metrics["status"] == "finished"
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk["status"] == "finished" and on_disk["epochs"] == 1
    assert on_disk["checkpoint"] == "last" and not (run / "best.ckpt").exists()
    assert set(on_disk["val"]["classes"]) == set(cfg.classes)
    src = on_disk["data"]["source"]
    train_subjects, val_subjects = (set(src[s]["subjects"]) for s in ("train", "val"))
    assert train_subjects and val_subjects and not train_subjects & val_subjects
    ckpt = torch.load(run / "last.ckpt", weights_only=True)
    assert "optimizer_states" not in ckpt  # finished runs keep weights only
    assert ckpt["hyper_parameters"]["classes"] == list(cfg.classes)
    stamp = (run / "last.ckpt").stat().st_mtime_ns

    train(make_cfg())  # same config: not retrained
    assert "already finished" in capsys.readouterr().out
    assert (run / "last.ckpt").stat().st_mtime_ns == stamp

    with pytest.raises(RunStateError, match=r"optimizer\.lr"):
        train(make_cfg("optimizer.lr=0.1"))

    # what was derived from the old training (its evaluations, its summary) goes with it
    (run / "eval" / "key").mkdir(parents=True)
    (run / "eval" / "key" / "synthetic_lab.json").write_text("{}")
    (run / "summary").mkdir()
    forced = make_cfg("train.force=true")
    assert train(forced)["status"] == "finished"
    assert (run / "last.ckpt").stat().st_mtime_ns != stamp
    assert not (run / "eval").exists() and not (run / "summary").exists()


def test_last_checkpoint_is_the_last_epoch_even_when_it_is_not_the_best(make_cfg):
    """lr = 1e-12: val/acc never improves after epoch 0, so best.ckpt stays at epoch 0 while
    last.ckpt must hold the final epoch (Lightning 2.6's `save_last` wrote last.ckpt only with
    a new best: runs reported `last` were silently their best epoch, and resuming retrained)."""
    cfg = make_cfg("optimizer.lr=1e-12", "train.keep_checkpoints=all")
    with open_dict(cfg):
        cfg.trainer.max_epochs = 3
    metrics = train(cfg)
    run = Path(cfg.paths.run_dir)
    last = torch.load(run / "last.ckpt", weights_only=True)
    best = torch.load(run / "best.ckpt", weights_only=True)
    assert metrics["global_step"] == last["global_step"] > best["global_step"]
    assert last["epoch"] == 2 and best["epoch"] == 0
    assert "optimizer_states" in last  # keep_checkpoints=all: still resumable


def test_fold_out_of_range_stops_before_work(make_cfg):
    cfg = make_cfg("split.k=10", "split.fold=12")
    with pytest.raises(ConfigError, match=r"split.fold=12 is out of range: allowed 0..9"):
        train(cfg)
    assert not Path(cfg.paths.run_dir).exists()


def _fit(cfg, max_epochs, ckpt_path=None):
    """The net's weights after a Lightning fit (to interrupt between epochs)."""
    return fit_lightning(cfg, max_epochs, ckpt_path)[1].net.state_dict()


def test_resume_is_bit_identical_with_two_workers(make_cfg, tmp_path):
    """Shuffling, augmentation and dropout continue exactly across a resume (STYLE.md §7)."""
    overrides = ("datamodule.num_workers=2", "datamodule.persistent_workers=true")
    straight = make_cfg(*overrides, run_dir=tmp_path / "a")
    with open_dict(straight):
        straight.datamodule.batch_size = 16
    ref = _fit(straight, 2)

    cut = make_cfg(*overrides, run_dir=tmp_path / "b")
    with open_dict(cut):
        cut.datamodule.batch_size = 16
    _fit(cut, 1)
    resumed = _fit(cut, 2, ckpt_path=str(tmp_path / "b" / "last.ckpt"))
    for k, v in ref.items():
        assert torch.equal(v, resumed[k]), k


def test_startup_checks_report_every_problem_at_once(make_cfg):
    cfg = make_cfg("strategy=fc", "split.k=3", "split.fold=5", "eval.checkpoint=middle")
    with pytest.raises(ConfigError) as err:
        train(cfg)
    message = str(err.value)
    for needle in (
        "strategy=fc fine-tunes a pretrained model but init=glorot",
        "split.fold=5 is out of range: allowed 0..2",
        "eval.checkpoint='middle'",
    ):
        assert needle in message
    assert not Path(cfg.paths.run_dir).exists()

"""Re-running a run from its directory alone reproduces its numbers (CPU, same packages)."""

from __future__ import annotations

import json

import pytest

from fer.errors import DataError
from fer.rerun import main, rerun
from fer.train import train


def test_rerun_from_the_directory_alone_reproduces_metrics(make_cfg, tmp_path):
    cfg = make_cfg(run_dir=tmp_path / "run")
    train(cfg)
    result = rerun(tmp_path / "run", tmp_path / "again")
    first = json.loads((tmp_path / "run" / "metrics.json").read_text())
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert result["differences"] and result["max_abs_diff"] <= 1e-6
    for name, s in first["scores"].items():
        assert again["scores"][name]["confusion"] == s["confusion"]
    assert again["val"]["confusion"] == first["val"]["confusion"]
    assert (tmp_path / "again" / "last.ckpt").exists()


def test_rerun_refuses_what_is_not_a_finished_run(tmp_path, capsys):
    with pytest.raises(DataError, match="not a run directory"):
        rerun(tmp_path)
    assert main([str(tmp_path)]) == 1
    assert str(tmp_path) in capsys.readouterr().err

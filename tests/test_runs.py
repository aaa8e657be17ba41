"""Run-directory state: no dataset is scored on subjects its run or init checkpoint trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fer.errors import RunStateError
from fer.runs import check_not_trained_on, lineage_trained_subjects


def _run(folder: Path, data: dict, init_path: str | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"status": "finished", "data": data}))
    (folder / "config.yaml").write_text(yaml.safe_dump({"init": {"path": init_path}}))
    return folder


def test_lineage_follows_the_init_checkpoint(tmp_path):
    source = _run(
        tmp_path / "source",
        {
            "train_on": "source",
            "source": {"name": "lab", "train": {"subjects": ["s1", "s2"]}},
        },
    )
    adapted = _run(
        tmp_path / "adapted",
        {
            "train_on": "target",
            "source": {"name": "lab", "train": {"subjects": ["s1", "s2"]}},
            "target": {"name": "gray", "train": {"subjects": ["g1"]}},
        },
        init_path=str(source / "best.ckpt"),
    )
    config = yaml.safe_load((adapted / "config.yaml").read_text())
    trained = lineage_trained_subjects(adapted, config)
    # the adapted run trained on gray only, but its init checkpoint saw lab's s1, s2
    assert trained == {"gray": {"g1"}, "lab": {"s1", "s2"}}
    check_not_trained_on({"lab": {"s3"}, "gray": {"g2"}}, trained)
    with pytest.raises(RunStateError, match=r"lab: would score 1 subject\(s\) .*\(s2\)"):
        check_not_trained_on({"lab": {"s2", "s3"}}, trained)


def test_a_new_option_that_is_off_does_not_change_earlier_runs():
    from fer.runs import config_diff

    old = {"data": {"name": "x"}, "seed": 0}
    assert config_diff(old, {"data": {"name": "x", "dedupe": False}, "seed": 0}) == []
    assert config_diff(old, {"data": {"name": "x", "extra": None, "l": []}, "seed": 0}) == []
    # switched on, or a value the old run did not have, is a change
    assert config_diff(old, {"data": {"name": "x", "dedupe": True}, "seed": 0}) == ["data.dedupe"]
    assert config_diff(old, {"data": {"name": "x"}, "seed": 0, "k": 5}) == ["k"]
    # an option the old run had and the new config dropped is a change too
    assert config_diff({**old, "k": 5}, old) == ["k"]

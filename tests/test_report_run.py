"""One-run summary (`python -m fer.report.run`): a real tiny run, fake evaluations, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fer.errors import FerError
from fer.report.run import main, summarize_run
from fer.runs import EVALUATED


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _fake_eval(dataset: str = "synthetic_lab") -> dict:
    return {
        "dataset": dataset,
        "subset": "test",
        "size": 24,
        "leaky": False,
        "scores": {"acc": 0.5, "acc_macro": 0.25},
        "overlap": {"class_mean": {"dice": {"mean": 0.4}, "iou": {"mean": 0.3}}},
        "randomisation": {"spearman_mean": 0.1},
    }


def test_summary_of_a_real_run_with_csv_log_and_evaluations(make_cfg, tmp_path, capsys):
    from fer.train import train

    run = tmp_path / "run"
    cfg = make_cfg("logger=csv", run_dir=run)
    train(cfg)
    assert list(run.rglob("metrics.csv")), "logger=csv should leave a CSV log"
    # loggers get the config without this machine's paths (W&B gets the same dict)
    [hparams] = run.rglob("hparams.yaml")
    logged = hparams.read_text()
    assert "<local path>" in logged and str(tmp_path) not in logged and "synthetic" in logged
    key = run / "eval" / "last-gradcam"
    key.mkdir(parents=True)
    stamp = {EVALUATED: json.loads((run / "metrics.json").read_text())["finished_at"]}
    (key / "synthetic_lab.json").write_text(json.dumps(stamp | _fake_eval()))
    (key / "broken.json").write_text('{"scores": {"acc": 0.')
    # an evaluation of an earlier training of the run: listed as skipped, not as a result
    (key / "stale.json").write_text(json.dumps({EVALUATED: "2020-01-01"} | _fake_eval("stale")))

    written = summarize_run(run)
    out = run / "summary"
    for name in ("curves.png", "per_class.csv", "evaluations.csv", "summary.md"):
        assert (out / name).is_file(), name
    assert written["curves"] == out / "curves.png"

    metrics = json.loads((run / "metrics.json").read_text())
    for name, scores in metrics["scores"].items():
        assert written["confusion"][name] == out / f"confusion_{name}.png"
        assert (out / f"confusion_{name}.png").is_file()
        rows = {r["class"]: r for r in _rows(out / "per_class.csv") if r["dataset"] == name}
        assert set(rows) == set(scores["per_class"])
        for cls, acc in scores["per_class"].items():
            assert float(rows[cls]["acc"]) == pytest.approx(acc)
            assert int(rows[cls]["support"]) == scores["support"][cls]

    evals = _rows(out / "evaluations.csv")
    assert len(evals) == 1
    row = evals[0]
    assert (row["key"], row["dataset"], row["subset"]) == ("last-gradcam", "synthetic_lab", "test")
    assert float(row["acc"]) == 0.5 and float(row["dice_class_mean"]) == 0.4
    assert float(row["spearman_mean"]) == 0.1 and row["leaky"] == "False"
    assert written["skipped"] == [key / "broken.json", key / "stale.json"]
    text = capsys.readouterr().out
    assert "skipped" in text and "broken.json" in text and "earlier training" in text
    assert "broken.json" in (out / "summary.md").read_text()


def _fake_finished_run(run: Path) -> None:
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("name: fake\n")
    scores = {
        "subset": "val",
        "acc": 0.5,
        "acc_macro": 0.5,
        "per_class": {"anger": 1.0, "disgust": 0.0},
        "support": {"anger": 1, "disgust": 1},
        "classes": ["anger", "disgust"],
        "confusion": [[1, 0], [1, 0]],
    }
    (run / "metrics.json").write_text(json.dumps({"status": "finished", "scores": {"lab": scores}}))


def test_summary_without_csv_log_skips_curves(tmp_path, capsys):
    run = tmp_path / "run"
    _fake_finished_run(run)
    written = summarize_run(run)
    assert "curves" not in written and not (run / "summary" / "curves.png").exists()
    assert (run / "summary" / "confusion_lab.png").is_file()
    assert _rows(run / "summary" / "evaluations.csv") == []
    assert "no CSV log" in capsys.readouterr().out
    assert main([str(run)]) == 0


def test_bad_run_dirs_give_one_line_errors_naming_the_path(tmp_path, capsys):
    not_run = tmp_path / "nothing"
    not_run.mkdir()
    with pytest.raises(FerError, match="not a run directory") as e:
        summarize_run(not_run)
    assert str(not_run) in str(e.value)

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("name: x\n")
    with pytest.raises(FerError, match="unfinished") as e:
        summarize_run(unfinished)
    assert str(unfinished) in str(e.value)
    (unfinished / "metrics.json").write_text(json.dumps({"status": "failed"}))
    with pytest.raises(FerError, match="status: failed"):
        summarize_run(unfinished)

    assert main([str(not_run)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(not_run) in err and err.startswith("error:")


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "run_dir" in capsys.readouterr().out

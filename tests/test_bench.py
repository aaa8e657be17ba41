"""The throughput benchmarks: --help, and a tiny run of each writes the JSON the cost model
reads (in-process: a subprocess per script would cost its ~7 s of imports)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from fer import costs

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        yield {n: importlib.import_module(n) for n in ("train_throughput", "loader_throughput")}
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("name", ["train_throughput", "loader_throughput"])
def test_help(bench, name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    with pytest.raises(SystemExit) as done:
        bench[name].main()
    assert done.value.code == 0
    assert "images/s" in capsys.readouterr().out


def test_tiny_train_throughput_feeds_the_cost_model(bench, tmp_path, monkeypatch, capsys):
    argv = ["x", "--models", "small_vgg", "--size", "24", "--devices", "cpu", "--batch", "2"]
    argv += ["--precision", "fp32", "--channels-last", "off", "--min-time", "0", "--warmup", "0"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(tmp_path)])
    bench["train_throughput"].main()
    out = capsys.readouterr().out
    assert "small_vgg" in out and "img/s" in out
    data = json.loads((tmp_path / "train_throughput.json").read_text())
    [run] = data["runs"]
    [(key, row)] = data["throughput"].items()
    assert key == f"{row['device']}|small_vgg|24|fp32" and row["kind"] == "cpu"
    assert row["images_per_s"] == run["images_per_s"] > 0
    # seconds are rounded to 1 ms in the JSON: a short run's rate is known only to a few %
    assert run["images_per_s"] == pytest.approx(run["steps"] * 2 / run["seconds"], rel=0.05)
    assert row["flops_train_per_image"] == 3 * run["flops_fwd_per_image"] > 0
    tp = costs.throughput(
        costs.load_throughput(tmp_path / "train_throughput.json"),
        "cpu",
        "small_vgg",
        24,
        "fp32",
        row["flops_train_per_image"],
    )
    assert tp.images_per_s == row["images_per_s"] and tp.source.startswith("measured")


def test_merge_replaces_the_same_variant_and_keys_the_fastest_uncompiled(bench, tmp_path):
    tt = bench["train_throughput"]
    base = dict(device="GPU", kind="cuda", model="m", size=48, precision="bf16", batch=8)
    base.update(optimizer="adam", threads=None, flops_train_per_image=1.0, params=1)

    def row(ips: float, cl: bool = False, comp: bool = False) -> dict:
        return {**base, "images_per_s": ips, "channels_last": cl, "compile": comp}

    path = tmp_path / "t.json"
    path.write_text(json.dumps(tt.merge(path, [row(10.0), row(20.0, cl=True)])))
    merged = tt.merge(path, [row(30.0), row(99.0, comp=True)])  # a re-run of cl=off
    assert sorted(r["images_per_s"] for r in merged["runs"]) == [20.0, 30.0, 99.0]
    assert merged["throughput"]["GPU|m|48|bf16"]["images_per_s"] == 30.0  # compile: not train.py


def test_peak_table_picks_the_specific_name_first(bench):
    tt = bench["train_throughput"]
    assert tt.peak_tflops("NVIDIA H100 80GB HBM3", None) == 989.0
    assert tt.peak_tflops("NVIDIA H100 PCIe", None) == 756.0
    assert tt.peak_tflops("NVIDIA A100-SXM4-80GB", None) == 312.0
    assert tt.peak_tflops("Some GPU", None) is None
    assert tt.peak_tflops("Some GPU", 100.0) == 100.0


def test_tiny_loader_throughput(bench, tmp_path, monkeypatch, capsys, synthetic_cache):
    argv = ["x", "--configs", "small_vgg", "--min-time", "0", "--no-e2e"]
    argv += ["--cache", str(synthetic_cache), "--out", str(tmp_path), "--override"]
    argv += ["data.source.n_subjects=10", "data.source.per_class=2", "model.input.size=24"]
    argv += ["datamodule.batch_size=8"]
    monkeypatch.setattr(sys, "argv", argv)
    bench["loader_throughput"].main()
    [row] = json.loads((tmp_path / "loader_throughput.json").read_text())
    assert row["loader_images_per_s"] > 0 and row["model_images_per_s"] > 0
    assert row["ratio"] == pytest.approx(
        row["loader_images_per_s"] / row["model_images_per_s"], 0.01
    )
    assert row["train_images"] == 96  # 10 subjects x 2 x 6 classes, 4 of 5 folds
    assert "ratio" in capsys.readouterr().out

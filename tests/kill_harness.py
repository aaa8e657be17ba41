"""Kill-anywhere harness: SIGKILL a small synthetic sweep at chosen moments, re-run, repeat.

    python tests/kill_harness.py --root DIR [--kills K] [--runs N] [--workers W] [--seed S]

The driver imports the code once and runs every sweep attempt in a forked child (no import
cost per attempt; the driver itself runs no torch op, so forking is safe). A sweep here is
what sweep.py's stages do, in-process: train each run (synthetic, `--runs` folds), evaluate
it, write its one-run summary. Kill points are reached by patching, in the child only, the
function that is running at that moment:

    cache       while the preprocessing cache is written (images.npy done, masks.npy not)
    training    inside a training step of the second epoch
    checkpoint  a checkpoint written to its temp file, before it replaces the old one
    metrics     just before metrics.json is replaced
    evaluation  while an evaluation JSON is written
    report      while the run summary is written
    random      the parent kills the child after a seeded random delay (first in a round)

An uninterrupted sweep runs first (the reference); then attempts are killed until `--kills`
kills have hit, then one attempt finishes the rest. Checked: every run complete, no run's
`_fit` started after its metrics.json said finished, scores and evaluation equal to the
reference within 1e-6. Prints one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

POINTS = ("random", "cache", "training", "checkpoint", "metrics", "evaluation", "report")
TOL = 1e-6


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(point: str, nth: int) -> None:
    """Patch the function running at `point` to SIGKILL this process on its `nth` call."""
    import fer.checkpoint_io
    import fer.data.preprocess
    import fer.evaluate
    import fer.module
    import fer.report.run
    import fer.runs

    calls = {"n": 0}

    def due() -> bool:
        calls["n"] += 1
        return calls["n"] >= nth

    if point == "cache":
        orig = fer.data.preprocess.atomic_write

        def write(path, fn):
            if Path(path).name == "masks.npy" and due():
                _die()
            return orig(path, fn)

        fer.data.preprocess.atomic_write = write
    elif point == "training":
        orig_step = fer.module.FERClassifier.training_step

        def step(self, batch, batch_idx):
            if self.current_epoch >= 1 and due():
                _die()
            return orig_step(self, batch, batch_idx)

        fer.module.FERClassifier.training_step = step
    elif point == "checkpoint":
        import tempfile

        orig = fer.checkpoint_io.atomic_write

        def save(path, fn):
            if str(path).endswith(".ckpt") and due():
                fd, _ = tempfile.mkstemp(dir=Path(path).parent, suffix=".tmp")
                with os.fdopen(fd, "wb") as f:
                    fn(f)  # the new checkpoint is in its temp file; the old one untouched
                _die()
            return orig(path, fn)

        fer.checkpoint_io.atomic_write = save
    elif point == "metrics":
        orig = fer.runs.atomic_write_json

        def metrics(path, obj):
            if Path(path).name == "metrics.json" and due():
                _die()
            return orig(path, obj)

        fer.runs.atomic_write_json = metrics
    elif point == "evaluation":
        orig = fer.evaluate.atomic_write_json

        def result(path, obj):
            if due():
                _die()
            return orig(path, obj)

        fer.evaluate.atomic_write_json = result
    elif point == "report":
        orig = fer.report.run._write_csv

        def table(*a, **k):
            if due():
                _die()
            return orig(*a, **k)

        fer.report.run._write_csv = table


def _compose(root: Path, fold: int, workers: int) -> Any:
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "logger=none",
                f"paths.output_root={root / 'outputs'}",
                f"paths.cache_dir={root / 'cache'}",
                "data.source.n_subjects=10",
                "data.source.per_class=2",
                "split.k=2",
                f"split.fold={fold}",
                "trainer.max_epochs=2",
                "trainer.enable_progress_bar=false",
                f"datamodule.num_workers={workers}",
                f"datamodule.persistent_workers={workers > 0}",
            ],
        )
    with open_dict(cfg):
        cfg.paths.run_dir = str(root / "outputs" / "default" / f"fold-{fold}")
    return cfg


def _sweep(root: Path, runs: int, workers: int) -> None:
    """One attempt: train, evaluate and summarise every run (skipping what is finished)."""
    import io

    from hydra import compose, initialize_config_dir
    from rich.console import Console

    import fer.runs
    import fer.train
    from fer.evaluate import evaluate
    from fer.report.run import summarize_run

    orig_fit = fer.train._fit

    def fit(cfg, run_dir, resolved):
        finished = fer.runs.status(run_dir) == "finished"
        with open(root / "fits.log", "a") as f:
            f.write(json.dumps({"run": str(run_dir), "finished_before": finished}) + "\n")
        return orig_fit(cfg, run_dir, resolved)

    fer.train._fit = fit

    for fold in range(runs):
        cfg = _compose(root, fold, workers)
        fer.train.train(cfg)
        with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
            ev = compose(
                "evaluate",
                overrides=[
                    f"runs={cfg.paths.run_dir}",
                    f"paths.cache_dir={root / 'cache'}",
                    "logger=none",
                ],
            )
        evaluate(ev)
        summarize_run(Path(cfg.paths.run_dir), console=Console(file=io.StringIO()))
        (Path(cfg.paths.run_dir) / "summary" / "done").write_text("ok")


def _attempt(root: Path, runs: int, workers: int, point: str | None, nth: int, delay: float):
    """Fork a child running one sweep attempt; returns (killed, seconds)."""
    start = time.time()
    pid = os.fork()
    if pid == 0:  # the child: arm the kill point, run, exit without cleanup handlers
        code = 0
        try:
            os.setsid()
            if point and point != "random":
                _arm(point, nth)
            _sweep(root, runs, workers)
        except BaseException as e:
            print(f"attempt failed: {type(e).__name__}: {e}", file=sys.stderr)
            code = 1
        os._exit(code)
    if point == "random":
        deadline = start + delay
        while time.time() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.02)
        else:
            os.killpg(pid, signal.SIGKILL)  # the child and its loader workers
            _, status = os.waitpid(pid, 0)
    else:
        _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        with contextlib.suppress(ProcessLookupError):  # loader workers of a killed child
            os.killpg(pid, signal.SIGKILL)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    if not killed and os.WEXITSTATUS(status) != 0:
        raise SystemExit(f"a sweep attempt failed (point {point}); see stderr")
    return killed, time.time() - start


def _results(root: Path, runs: int) -> dict[str, Any]:
    out = {}
    for fold in range(runs):
        run = root / "outputs" / "default" / f"fold-{fold}"
        metrics = json.loads((run / "metrics.json").read_text())
        [ev] = list((run / "eval").glob("*/synthetic_lab.json"))
        ev = json.loads(ev.read_text())
        out[f"fold-{fold}"] = {
            "status": metrics["status"],
            "finished_at": metrics["finished_at"],
            "scores": metrics["scores"],
            "eval_scores": ev["scores"],
            "eval_dice": ev["overlap"]["class_mean"]["dice"],
            "summary": (run / "summary" / "done").exists(),
        }
    return out


def _strip(results: dict[str, Any]) -> dict[str, Any]:
    return {r: {k: v for k, v in d.items() if k != "finished_at"} for r, d in results.items()}


def _finished_at(root: Path, runs: int) -> dict[str, str]:
    """When each run's metrics.json says it finished (runs not finished are left out)."""
    out = {}
    for fold in range(runs):
        m = root / "outputs" / "default" / f"fold-{fold}" / "metrics.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            out[f"fold-{fold}"] = json.loads(m.read_text())["finished_at"]
    return out


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths where two JSON-like values differ (numbers beyond TOL)."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        return [d for k in sorted(keys) for d in _differences(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _differences(x, y, f"{path}[{i}]")
        ]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
        return [] if both_nan or abs(a - b) <= TOL else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--kills", type=int, default=2)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--points", default=",".join(POINTS), help="kill points to draw from")
    args = p.parse_args(argv)
    started = time.time()
    import fer.evaluate
    import fer.report.run
    import fer.train  # noqa: F401

    ref_root = args.root / "reference"
    _, ref_seconds = _attempt(ref_root, args.runs, args.workers, None, 0, 0)
    reference = _strip(_results(ref_root, args.runs))
    rng = random.Random(args.seed)
    points = args.points.split(",")
    hits: list[dict[str, Any]] = []
    attempts, rounds, fits = 0, [], []
    retrained: list[str] = []
    diffs: list[str] = []
    complete = True
    # Rounds: a fresh sweep killed at points drawn in pipeline order (a point already passed
    # cannot be reached again), then finished, then compared; until `--kills` kills have hit.
    while len(hits) < args.kills:
        if attempts > 6 * args.kills + 10:
            raise SystemExit(f"only {len(hits)} of {args.kills} kills hit in {attempts} attempts")
        root = args.root / f"round-{len(rounds)}"
        # every point in turn (a round draws the next ones, in pipeline order)
        start = sum(len(r) for r in rounds) % len(points)
        turn = [points[(start + i) % len(points)] for i in range(len(points))]
        chosen = sorted(turn[: min(len(points), args.kills - len(hits))], key=POINTS.index)
        first_finish: dict[str, str] = {}
        for point in chosen:
            nth = {"training": rng.randint(1, 3), "checkpoint": rng.randint(1, 4)}.get(point, 1)
            delay = rng.uniform(0.2, ref_seconds)
            killed, _ = _attempt(root, args.runs, args.workers, point, nth, delay)
            attempts += 1
            if killed:
                hits.append(
                    {"round": len(rounds), "point": point, "nth": nth}
                    | ({"delay_s": round(delay, 2)} if point == "random" else {})
                )
            first_finish |= {
                k: v for k, v in _finished_at(root, args.runs).items() if k not in first_finish
            }
        killed, _ = _attempt(root, args.runs, args.workers, None, 0, 0)
        attempts += 1
        assert not killed
        final = _results(root, args.runs)
        complete &= all(d["status"] == "finished" and d["summary"] for d in final.values())
        log = [json.loads(line) for line in (root / "fits.log").read_text().splitlines()]
        fits += log
        retrained += [f["run"] for f in log if f["finished_before"]]
        retrained += [r for r, t in first_finish.items() if final[r]["finished_at"] != t]
        diffs += [f"round {len(rounds)}{d}" for d in _differences(_strip(final), reference)]
        rounds.append(chosen)
    report = {
        "kills": len(hits),
        "attempts": attempts,
        "rounds": len(rounds),
        "points_hit": sorted({h["point"] for h in hits}),
        "hits": hits,
        "fits": len(fits),
        "retrained_after_finish": retrained,
        "differences": diffs,
        "complete": complete,
        "seconds": round(time.time() - started, 1),
        "reference_seconds": round(ref_seconds, 1),
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()

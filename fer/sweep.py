"""Run a study (conf/study/): ordered stages, each a Hydra multirun of train.py or evaluate.py.

A stage's cells are the product of its `grid` (Hydra sweep syntax: `model=a,b`,
`split.fold=range(0,5)`) over its constant `overrides`. Before a stage runs, every cell's state
is read from its run directory (DESIGN.md "Finished": a valid metrics.json saying finished and
an unchanged config; an evaluation when its JSON files parse); only stages with unfinished
cells are launched, and after each stage every cell is checked again — the study stops with
the list of cells that did not finish. The launcher is Hydra's own (`hydra/launcher=basic`,
`local` = submitit's local executor, `slurm`), forwarded to each stage; requeue belongs to
submitit, resume to train.py (`last.ckpt` in the deterministic run dir).

The stage processes run in their own process group, die with this process
(`PR_SET_PDEATHSIG`) and receive the SIGINT/SIGTERM this process gets.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, read_write

from fer import locks, runs
from fer.errors import ConfigError
from fer.io import read_json_or_none

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

#: A stage runner: (argv, env) -> exit code. Tests pass a fake one.
Runner = Callable[[list[str], dict[str, str]], int]


@dataclass
class Cell:
    """One job of a stage: its overrides and where its results live."""

    overrides: list[str]
    run_dir: Path
    state: str = "missing"  # finished | running | failed | changed | resumable | missing
    detail: str = ""
    values: dict[str, str] = field(default_factory=dict)  # grid key -> value
    resolved: dict | None = None  # a training cell's resolved config (composed once)


@dataclass
class Stage:
    name: str
    script: str
    overrides: list[str]
    grid: list[tuple[str, list[str]]]  # (key, values) in grid order
    cells: list[Cell]
    runs_of: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- grid


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Hydra sweep overrides -> (key, values); Hydra's own parser expands `a,b`, `range()`;
    a list value `key=[a,b]` is swept too, so study keys can hold lists that a command line
    overrides without quoting (`study.models=[small_vgg,small_vgg_se]`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides([str(i) for i in items])
    except Exception as e:
        raise ConfigError(f"study grid {list(items)}: {e}") from None
    grid = []
    for o in parsed:
        if o.is_sweep_override():
            values = list(o.sweep_string_iterator())
        elif isinstance(o.value(), list):  # `key=[a,b]` (a study key holding a list): swept
            values = [str(v) for v in o.value()]
        else:
            values = [o.get_value_element_as_str()]
        grid.append((o.get_key_element(), values))
    return grid


def _compose_train(overrides: list[str]) -> tuple[Path, dict]:
    """The run directory Hydra would give these overrides in a multirun, and the resolved
    config train.py would compare with the stored one."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    cfg = compose("train", overrides=overrides, return_hydra_config=True)
    own = HydraConfig.instance().cfg  # sweep.py's own (its launcher choice), restored below
    try:
        HydraConfig.instance().set_config(cfg)  # ${hydra:...} resolves against the cell's
        run_dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
        with read_write(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = os.path.abspath(run_dir)  # as Hydra sets it
        HydraConfig.instance().set_config(cfg)  # (set_config keeps a copy)
        resolved = OmegaConf.to_container(cfg, resolve=True)
    finally:
        HydraConfig.instance().cfg = own
    resolved.pop("hydra")
    return run_dir, resolved


def _train_state(cell: Cell) -> None:
    """DESIGN.md "Finished" from the run's files (read once; nothing is written)."""
    stored = runs.read_config(cell.run_dir)
    metrics = runs.read_json_metrics(cell.run_dir)
    diff = runs.config_diff(stored, cell.resolved or {}) if stored is not None else []
    cell.detail = ""
    owner = locks.holder(cell.run_dir)
    if owner is not None and metrics.get("status") != "finished":
        cell.state = "running"
        cell.detail = "held by " + ", ".join(f"{k} {v}" for k, v in owner.items())
    elif metrics.get("status") == "failed":
        cell.state, cell.detail = "failed", str(metrics.get("reason", ""))[:300]
    elif diff:
        cell.state = "changed"
        cell.detail = "config differs in " + ", ".join(diff[:5])
    elif metrics.get("status") == "finished" and stored is not None:
        cell.state = "finished"
    elif (cell.run_dir / "last.ckpt").exists():
        cell.state = "resumable"
    else:
        cell.state = "missing"


@functools.cache
def _eval_settings(overrides: tuple[str, ...]) -> DictConfig:
    from hydra import compose

    return compose("evaluate", overrides=["runs=x", *overrides]).eval


def _eval_datasets(run_dir: Path, overrides: list[str]) -> tuple[str, list[str]]:
    """The eval-key folder and dataset JSON names an evaluation of `run_dir` writes."""
    from fer.evaluate import eval_key

    ev = _eval_settings(tuple(overrides))
    cfg = runs.read_config(run_dir) or {}
    checkpoint = ev.checkpoint or (cfg.get("eval") or {}).get("checkpoint", "last")
    names = [cfg.get("data", {}).get("name")]
    if cfg.get("target"):
        names.append(cfg["target"].get("name"))
    names += [str(n) for n in ev.datasets]
    wanted = list(dict.fromkeys(n for n in names if n))
    return eval_key(checkpoint, ev.cam_method, ev.cam_target), wanted


def _eval_state(cell: Cell, overrides: list[str]) -> None:
    if runs.status(cell.run_dir) != "finished":
        cell.state, cell.detail = "missing", "its training run is not finished"
        return
    key, names = _eval_datasets(cell.run_dir, overrides)
    trained = runs.read_json_metrics(cell.run_dir)
    missing = [
        n
        for n in names
        if not runs.evaluation_is_current(
            read_json_or_none(cell.run_dir / "eval" / key / f"{n}.json"), trained
        )
    ]
    cell.state = "missing" if missing else "finished"
    cell.detail = (
        f"no valid eval/{key}/{{{','.join(missing)}}}.json of its present training"
        if missing
        else ""
    )


def hydra_context() -> Any:
    """Compose from conf/: inside a Hydra app its own context, else a new one (tests)."""
    import contextlib

    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return contextlib.nullcontext()
    return initialize_config_dir(str(CONF), version_base="1.3")


def build_stages(cfg: DictConfig) -> list[Stage]:
    """The stages of `cfg.study` with their cells (each composed once) and their states."""
    study = cfg.study
    extra = [str(o) for o in cfg.sweep.extra]
    logger = [f"logger={cfg.sweep.logger}"] if cfg.sweep.get("logger") else []
    common = [
        f"paths.output_root={cfg.paths.output_root}",
        f"paths.cache_dir={cfg.paths.cache_dir}",
    ]
    stages: list[Stage] = []
    by_name: dict[str, Stage] = {}
    with hydra_context():
        for spec in study.stages:
            name, script = str(spec.name), str(spec.script)
            if script not in ("train.py", "evaluate.py"):
                raise ConfigError(
                    f"study {study.name}, stage {name}: script must be train.py or evaluate.py"
                )
            overrides = [str(o) for o in spec.get("overrides") or []] + logger
            if script == "train.py":
                # A shared run with a fixed directory (study_name: false, e.g. the pretraining
                # run every synthetic study loads) keeps its own settings: `sweep.extra` would
                # make it a different run in the same directory.
                shared = not spec.get("study_name", True)
                named = [] if shared else [f"name={study.name}"]
                overrides = named + overrides + ([] if shared else extra)
                grid = parse_grid(spec.get("grid") or [])
                stage = Stage(name, script, overrides, grid, [])
                keys = [k for k, _ in grid]
                for combo in itertools.product(*[v for _, v in grid]):
                    cell_ov = [f"{k}={v}" for k, v in zip(keys, combo, strict=True)]
                    run_dir, resolved = _compose_train(overrides + cell_ov + common)
                    cell = Cell(
                        overrides + cell_ov,
                        run_dir,
                        values=dict(zip(keys, combo, strict=True)),
                        resolved=resolved,
                    )
                    stage.cells.append(cell)
            else:
                sources = [str(s) for s in spec.get("runs_of") or []]
                unknown = [s for s in sources if s not in by_name]
                if not sources or unknown:
                    raise ConfigError(
                        f"study {study.name}, stage {name}: runs_of must name earlier train stages "
                        f"(got {sources}; known: {list(by_name)})"
                    )
                stage = Stage(name, script, overrides, [("runs", [])], [], runs_of=sources)
                for src in sources:
                    for tc in by_name[src].cells:
                        cell = Cell(
                            [f"runs={tc.run_dir}"], tc.run_dir, values={"runs": str(tc.run_dir)}
                        )
                        stage.cells.append(cell)
            refresh(stage)
            stages.append(stage)
            by_name[name] = stage
    return stages


def refresh(stage: Stage) -> Stage:
    """Read every cell's state again from its files (configs are not composed again)."""
    with hydra_context():
        for cell in stage.cells:
            if stage.script == "train.py":
                _train_state(cell)
            else:
                _eval_state(cell, stage.overrides)
    return stage


# ----------------------------------------------------------------------------- launching


def launcher_choice() -> tuple[str, list[str]]:
    """The `hydra/launcher` this sweep.py was started with, and its `hydra.launcher.*`
    overrides, to forward to every stage."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "basic", []
    hc = HydraConfig.get()
    choice = hc.runtime.choices.get("hydra/launcher") or "basic"
    forwarded = [o for o in hc.overrides.hydra if str(o).startswith("hydra.launcher.")]
    return str(choice), [str(o) for o in forwarded]


def groups(stage: Stage, todo: list[Cell], chunk: int | None) -> list[list[str]]:
    """Multirun override lists covering exactly the cells in `todo`.

    Without `chunk` (basic, slurm) one multirun of the whole grid when every cell is to run
    (one SLURM array), else one per row of the grid (all keys but the last fixed); with
    `chunk` (local) rows cut into pieces of `chunk` jobs, since submitit's local executor
    starts every job of a multirun at once.
    """
    if stage.script == "evaluate.py":
        dirs = [str(c.run_dir) for c in todo]
        step = chunk or len(dirs)
        return [[f"runs={','.join(dirs[i : i + step])}"] for i in range(0, len(dirs), step)]
    keys = [k for k, _ in stage.grid]
    if not keys:
        return [[]] if todo else []
    if chunk is None and len(todo) == len(stage.cells):
        return [[f"{k}={','.join(v)}" for k, v in stage.grid]]
    rows: dict[tuple[str, ...], list[str]] = {}
    for c in todo:
        rows.setdefault(tuple(c.values[k] for k in keys[:-1]), []).append(c.values[keys[-1]])
    out = []
    for fixed, last in rows.items():
        step = chunk or len(last)
        head = [f"{k}={v}" for k, v in zip(keys[:-1], fixed, strict=True)]
        out += [
            [*head, f"{keys[-1]}={','.join(last[i : i + step])}"] for i in range(0, len(last), step)
        ]
    return out


def commands(
    stage: Stage,
    todo: list[Cell],
    cfg: DictConfig,
    python: str,
    launcher: tuple[str, list[str]] = ("basic", []),
) -> list[tuple[list[str], dict]]:
    """The argv and environment of each multirun that runs `todo` under `launcher`
    (`hydra/launcher` choice and its forwarded `hydra.launcher.*` overrides)."""
    launcher, forwarded = launcher
    local = launcher == "local"
    parallel = max(1, int(cfg.sweep.local_parallel))
    env = dict(os.environ)
    common = [
        f"paths.output_root={cfg.paths.output_root}",
        f"paths.cache_dir={cfg.paths.cache_dir}",
    ]
    if local:  # parallel jobs share the cores (torch reads OMP_NUM_THREADS at start-up)
        threads = max(1, (os.cpu_count() or 1) // parallel)
        env["OMP_NUM_THREADS"] = str(threads)
        if stage.script == "train.py":
            common.append(f"train.threads={threads}")
    out = []
    for group in groups(stage, todo, parallel if local else None):
        argv = [python, str(REPO / stage.script), "-m", *stage.overrides, *group, *common]
        argv += [f"hydra/launcher={launcher}", *forwarded]
        out.append((argv, env))
    return out


def _pdeathsig() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the stage process gets SIGTERM when sweep.py dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_process(argv: list[str], env: dict[str, str]) -> int:
    """Run one stage multirun in its own process group, forwarding SIGINT/SIGTERM to it."""
    proc = subprocess.Popen(argv, env=env, start_new_session=True, preexec_fn=_pdeathsig)
    received: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if received:
        raise KeyboardInterrupt(
            f"stopped by signal {received[0]}; re-run to finish what is missing"
        )
    return code


# ----------------------------------------------------------------------------- the study


def describe(stages: list[Stage]) -> str:
    """One line per stage with its cells' states."""
    lines = []
    for s in stages:
        counts: dict[str, int] = {}
        for c in s.cells:
            counts[c.state] = counts.get(c.state, 0) + 1
        states = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        lines.append(f"{s.name:<12} {s.script:<12} {len(s.cells):>4} cells: {states}")
    return "\n".join(lines)


def run_lines(stage: Stage, cfg: DictConfig) -> list[str]:
    """Each cell's state and the single-run command (from the repository) that runs it by
    hand into the same run directory."""
    common = [
        f"paths.output_root={cfg.paths.output_root}",
        f"paths.cache_dir={cfg.paths.cache_dir}",
    ]
    lines = []
    for c in stage.cells:
        args = c.overrides if stage.script == "train.py" else [*stage.overrides, *c.overrides]
        lines.append(f"  [{c.state}] " + shlex.join(["python", stage.script, *args, *common]))
    return lines


def dry_run_costs(stages: list[Stage], cfg: DictConfig) -> str:
    """`fer.costs`' time/disk/memory table for the stages on `sweep.device`."""
    from hydra import compose

    from fer.costs import estimate_study

    evals: dict[str, list[dict]] = {}
    batch = 128
    with hydra_context():
        for s in stages:
            if s.script != "evaluate.py":
                continue
            ev = _eval_settings(tuple(s.overrides))
            batch = int(ev.get("batch_size", batch))
            evals[s.name] = []
            for name in ev.datasets:
                data = compose("train", overrides=[f"data={name}", "logger=none"]).data
                try:
                    evals[s.name].append(OmegaConf.to_container(data, resolve=True))
                except Exception:  # an unset data root: the counts need no paths
                    evals[s.name].append(OmegaConf.to_container(data, resolve=False))
    path = Path(str(cfg.sweep.get("throughput") or "bench/results/train_throughput.json"))
    path = path if path.is_absolute() else REPO / path
    device, precision = cfg.sweep.get("device"), cfg.sweep.get("precision")
    return estimate_study(
        stages, evals, path, str(device) if device else None, precision or None, batch
    )


def launcher_parameters(cfg: DictConfig, launcher: tuple[str, list[str]]) -> dict[str, Any] | None:
    """The launcher config a stage would get (what sbatch is given under slurm)."""
    from hydra import compose

    launcher, forwarded = launcher
    if launcher == "basic":
        return None
    with hydra_context():
        hc = compose(
            "train",
            overrides=[
                f"paths.output_root={cfg.paths.output_root}",
                f"hydra/launcher={launcher}",
                *forwarded,
            ],
            return_hydra_config=True,
        )
    try:  # interpolations (submitit_folder) shown as sbatch will get them
        params = OmegaConf.to_container(hc.hydra.launcher, resolve=True)
    except Exception:
        params = OmegaConf.to_container(hc.hydra.launcher, resolve=False)
    params.pop("_target_", None)
    return params


def run_study(
    cfg: DictConfig,
    runner: Runner = run_process,
    python: str | None = None,
    launcher: tuple[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Run what is missing of `cfg.study`, stage by stage; return what ran and the report.

    `launcher` defaults to the one this sweep.py was started with (`launcher_choice`)."""
    from rich.console import Console

    console = Console(stderr=True)
    python = python or sys.executable
    launcher = launcher or launcher_choice()  # read before composing cells
    only = set(cfg.sweep.stages) if cfg.sweep.stages else None
    stages = build_stages(cfg)
    console.print(f"[bold]study {cfg.study.name}[/] ({launcher[0]} launcher)\n" + describe(stages))
    if cfg.sweep.dry:
        params = launcher_parameters(cfg, launcher)
        if params is not None:
            console.print("launcher parameters:", OmegaConf.to_yaml(OmegaConf.create(params)))
        for stage in stages:
            todo = [c for c in stage.cells if c.state != "finished"]
            for argv, _ in commands(stage, todo, cfg, python, launcher) if todo else []:
                shown = " ".join(
                    a if len(a) < 200 else a[:120] + f"...({len(a)} chars)" for a in argv[1:]
                )
                console.print("would run:", shown, soft_wrap=True)
        for stage in stages:  # every run, and the single command that re-runs it by hand
            console.print(f"runs of {stage.name}:", markup=False)
            for line in run_lines(stage, cfg):
                console.print(line, markup=False, highlight=False, soft_wrap=True)
        try:
            costs = dry_run_costs(stages, cfg)
        except Exception as e:  # an aid to the listing above: never stop the dry run for it
            costs = f"cost estimate unavailable: {type(e).__name__}: {e}"
        console.print(costs, markup=False, highlight=False, soft_wrap=True)
        return {"dry": True, "stages": stages}
    launched: dict[str, int] = {}
    for i, stage in enumerate(stages):
        if only is not None and stage.name not in only:
            continue
        if i > 0 and stage.script == "evaluate.py":  # earlier stages just ran: read states again
            refresh(stage)
        # a cell another live process holds (a double-submitted sweep) is left to it
        todo = [c for c in stage.cells if c.state not in ("finished", "running")]
        running = [c for c in stage.cells if c.state == "running"]
        changed = [c for c in todo if c.state == "changed"]
        if changed:
            raise ConfigError(
                f"stage {stage.name}: {len(changed)} finished run(s) were made with another config "
                f"({changed[0].run_dir}: {changed[0].detail}); re-run them with "
                "sweep.extra=[train.force=true] or restore the config"
            )
        if not todo and not running:
            console.print(f"stage {stage.name}: all {len(stage.cells)} cells finished")
            continue
        console.print(
            f"stage {stage.name}: running {len(todo)} of {len(stage.cells)} cells"
            + (f" ({len(running)} held by another process)" if running else "")
        )
        launched[stage.name] = len(todo)
        for argv, env in commands(stage, todo, cfg, python, launcher) if todo else []:
            code = runner(argv, env)
            if code != 0:
                console.print(f"[yellow]stage {stage.name}: a multirun exited with {code}[/]")
        after = refresh(stage)
        failed = [c for c in after.cells if c.state != "finished"]
        if failed:
            listing = "\n".join(f"  {c.run_dir}  [{c.state}] {c.detail}" for c in failed)
            raise StageFailed(
                f"stage {stage.name}: {len(failed)} of {len(after.cells)} cells did not finish:\n"
                f"{listing}\nlogs: <run dir>/{Path(stage.script).stem}.log, "
                f"{cfg.paths.output_root}/.submitit/*/ (submitit launchers), <run dir>/wandb/. "
                "Fix and re-run the same command: finished cells are skipped."
            )
    return {"dry": False, "stages": stages, "launched": launched}


class StageFailed(ConfigError):
    """A stage ended with cells that did not finish (listed in the message)."""


def main(cfg: DictConfig) -> None:
    """sweep.py: run the study, then write its report; a user error is one line, exit 1;
    an interruption exits 130 after the stage process group has been stopped."""
    from fer.errors import FerError

    try:
        result = run_study(cfg)
        if not result["dry"] and cfg.sweep.report:
            report_study(cfg)
    except KeyboardInterrupt as e:
        print(f"\ninterrupted: {e}", file=sys.stderr)
        sys.exit(130)
    except FerError as e:
        sys.exit(f"error: {e}")


def table1_counts(cfg: DictConfig) -> Any:
    """Study A's Table 1 inputs for the study's datasets (preprocessing is cached: cheap when
    the runs already did it); a dataset that cannot be read is reported and left out."""
    import pandas as pd
    from hydra import compose

    from fer.errors import FerError
    from fer.prepare import prepare

    frames = []
    with hydra_context():
        for name in cfg.study.get("datasets") or []:
            pcfg = compose(
                "prepare",
                overrides=[
                    f"data={name}",
                    f"paths.output_root={cfg.paths.output_root}",
                    f"paths.cache_dir={cfg.paths.cache_dir}",
                ],
            )
            try:
                table = pd.DataFrame(prepare(pcfg)["table1"])
            except FerError as e:
                print(f"table 1: {name} left out: {e}", file=sys.stderr)
                continue
            frames.append(table.assign(dataset=str(name)))
    return pd.concat(frames, ignore_index=True) if frames else None


def report_study(cfg: DictConfig) -> dict[str, Any]:
    """Write reports/<study>/ from the run directories (offline; never from W&B)."""
    from fer.report.study import log_wandb, write_report

    out = Path(cfg.paths.report_root) / str(cfg.study.name)
    result = write_report(
        OmegaConf.to_container(cfg.study, resolve=True),
        Path(cfg.paths.output_root) / str(cfg.study.name),
        out,
        counts=table1_counts(cfg),
    )
    if cfg.sweep.wandb_report:
        log_wandb(out, str(cfg.study.name))
    from fer.io import atomic_write_text

    atomic_write_text(out / "headline.md", str(result.get("headline", "")) + "\n")
    print(f"\n{result.get('headline', '')}\n\nreport: {out}/README.md ({out})")
    return result

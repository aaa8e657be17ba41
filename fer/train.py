"""`train(cfg)`: one training job from a composed config (called by train.py and by tests).

Heavy imports (torch, Lightning) happen after the start-up checks, so a bad value fails fast.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fer import runs
from fer.checks import check_train_config
from fer.labels import check_classes
from fer.locks import RunLocked, is_rank_zero, run_lock

log = logging.getLogger("fer.train")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train (or resume, or skip when finished) the run in `cfg.paths.run_dir`.

    Returns the run's metrics.json content.
    """
    check_train_config(cfg)
    check_distributed(cfg)
    run_dir = Path(cfg.paths.run_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if not is_rank_zero():  # a DDP rank re-running the entrypoint: rank 0 decided everything
        return _fit(cfg, run_dir, resolved)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with run_lock(run_dir):  # one process per run dir (a double-submitted sweep)
            if cfg.train.force:
                _clear_run(run_dir)
            elif runs.is_finished(run_dir, resolved):
                print(f"already finished: {run_dir}")
                _finish_compaction(run_dir, cfg)
                return runs.read_json_metrics(run_dir)
            runs.ensure_config(run_dir, resolved)
            return _fit(cfg, run_dir, resolved)
    except RunLocked as e:
        # not a failure of this run: its owner is alive and writes its files; nothing here
        # may touch them (in a multirun, run_job would record a failure in metrics.json)
        log.warning("%s", e)
        print(f"skipped: {e}")
        return {"status": "locked", "reason": str(e)}


def _clear_run(run_dir: Path) -> None:
    from fer.provenance import PATCH, PROVENANCE

    for name in ("last.ckpt", "best.ckpt", runs.METRICS, runs.CONFIG, PROVENANCE, PATCH):
        (run_dir / name).unlink(missing_ok=True)
    for kept in run_dir.glob("git_diff.*.patch"):  # earlier attempts' diffs
        kept.unlink(missing_ok=True)
    # everything derived from the old training goes with it (its evaluations, its summary)
    for derived in ("wandb", "eval", "summary", "csv"):
        shutil.rmtree(run_dir / derived, ignore_errors=True)


def _resume_checkpoint(run_dir: Path) -> Path | None:
    """`last.ckpt` when it loads; a corrupt one is moved aside (reported) and training restarts."""
    from fer.checkpoint_io import load_checkpoint
    from fer.errors import DataError

    last = run_dir / "last.ckpt"
    if not last.exists():
        return None
    try:
        state = load_checkpoint(last)
    except DataError as e:
        bad = last.with_suffix(".ckpt.corrupt")
        last.replace(bad)
        log.warning("%s; moved to %s, training from the start", e, bad.name)
        return None
    if not state.get("optimizer_states"):  # weights only (an older fer's compaction): no resume
        aside = last.with_suffix(".ckpt.weights-only")
        last.replace(aside)
        log.warning("%s holds weights only; moved to %s, training from the start", last, aside.name)
        return None
    return last


def _last_or_none(run_dir: Path) -> Path | None:
    """A DDP rank > 0 resumes from what rank 0 validated (it never moves files)."""
    last = run_dir / "last.ckpt"
    return last if last.exists() else None


def check_distributed(cfg: DictConfig) -> None:
    """Refuse `trainer=ddp` where it cannot work: Lightning's `ddp` re-executes sys.argv in
    each extra process, which inside a basic-launcher multirun re-runs the whole sweep (use
    `ddp_spawn`, or the submitit launchers: one job per cell, its tasks the processes); and
    with Lightning's distributed sampler, which would reshuffle our epoch order."""
    from fer.cli import in_multirun
    from fer.errors import ConfigError

    strategy = str(cfg.trainer.get("strategy", "auto"))
    if not strategy.startswith("ddp"):
        return
    if cfg.trainer.get("use_distributed_sampler", True):
        raise ConfigError(
            f"trainer.strategy={strategy} needs trainer.use_distributed_sampler=false "
            "(fer shards its own epoch order per process; trainer=ddp sets it)"
        )
    if strategy == "ddp" and in_multirun() and is_rank_zero():
        from hydra.core.hydra_config import HydraConfig

        launcher = HydraConfig.get().runtime.choices.get("hydra/launcher") or "basic"
        if launcher == "basic":
            raise ConfigError(
                "trainer.strategy=ddp inside a basic-launcher multirun would re-run the whole "
                "sweep in every extra process: use trainer.strategy=ddp_spawn, or "
                "hydra/launcher=slurm (one job per cell, tasks_per_node = GPUs)"
            )


def _fit(cfg: DictConfig, run_dir: Path, resolved: dict) -> dict[str, Any]:
    import lightning as L
    from hydra.utils import instantiate
    from lightning.pytorch.loggers import CSVLogger

    from fer.checkpoint_io import AtomicCheckpointIO, save_weights_only
    from fer.cli import quiet_lightning
    from fer.loggers import build_logger, finish_wandb
    from fer.models.build import build_model
    from fer.module import FERClassifier, score_datasets
    from fer.provenance import portable_config, wandb_fields, write_provenance
    from fer.strategies import apply_strategy

    started = time.time()
    _reset_peak_memory()
    quiet_lightning()
    if cfg.train.get("threads"):
        import torch

        torch.set_num_threads(int(cfg.train.threads))
    classes = check_classes(cfg.classes)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = make_datamodule(cfg)
    net = build_model(cfg.model, cfg.init, len(classes))
    trainable = apply_strategy(net, cfg.strategy.name)
    module = FERClassifier(
        net,
        classes,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        seed=int(cfg.seed),
        config=resolved,
    )
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    # Code, stack and hardware (provenance.json, git_diff.patch); the data facts are in
    # metrics.json["data"]. The preprocessing cache key is not exposed by the datamodule.
    rank_zero = is_rank_zero()  # DDP: only rank 0 writes files (Lightning's loggers know it too)
    provenance = write_provenance(run_dir) if rank_zero else {}
    logger = build_logger(cfg, run_dir, "train", extra=wandb_fields(provenance))
    loggers = [logger] if logger is not None else []
    if loggers and not isinstance(logger, CSVLogger):
        # curves on disk beside W&B: `python -m fer.report.run` plots them offline
        loggers.append(CSVLogger(str(run_dir), name="csv"))
    hparams = {
        "classes": list(classes),
        "seed": int(cfg.seed),
        "config": portable_config(resolved, cfg.paths.output_root),
    }
    for each in loggers:  # rank 0 only (Lightning's loggers are rank-zero-only)
        each.log_hyperparams(hparams)
    exit_code = 1
    try:
        trainer = instantiate(
            cfg.trainer,
            callbacks=callbacks,
            logger=loggers or False,
            plugins=[AtomicCheckpointIO()],
            default_root_dir=str(run_dir),
        )
        resume = _resume_checkpoint(run_dir) if rank_zero else _last_or_none(run_dir)
        if resume is not None:
            print(f"resuming from {resume}")
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
        reported = run_dir / f"{cfg.eval.checkpoint}.ckpt"
        if not reported.exists():
            raise RuntimeError(f"training ended without {reported}")
        trainer.validate(module, datamodule=datamodule, ckpt_path=str(reported), verbose=False)
        if not trainer.is_global_zero:
            exit_code = 0
            return {}
        loaders = {name: datamodule.eval_loader(ds) for name, ds in datamodule.score_sets.items()}
        scores = score_datasets(module.net, loaders, classes, datamodule.score_subset)
        # the monitored ModelCheckpoint (best.ckpt); the other one writes last.ckpt
        best_cb = next((c for c in trainer.checkpoint_callbacks if c.monitor), None)
        metrics = {
            "status": "finished",
            "name": str(cfg.name),
            "run_name": run_dir.name,
            "checkpoint": cfg.eval.checkpoint,
            "checkpoint_path": reported.name,
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "best_val_acc": float(best_cb.best_model_score)
            if best_cb is not None and best_cb.best_model_score is not None
            else None,
            "classes": list(classes),
            "strategy": {"name": cfg.strategy.name, **trainable},
            "val": module.last_val,
            "scores": scores,
            "data": datamodule.describe(),
            "duration_s": round(time.time() - started, 1),
            "memory": peak_memory(),
            "finished_at": runs.now(),
        }
        # metrics.json first: a kill between the two leaves a finished run with its full
        # checkpoints (compacted on the next visit), never a weights-only last.ckpt without
        # metrics.json, which could not be resumed (no optimizer state)
        runs.write_metrics(run_dir, metrics)
        _keep_reported(run_dir, reported, cfg.train.keep_checkpoints, save_weights_only)
        exit_code = 0
        summary = "  ".join(f"{n}={v['acc']:.3f}" for n, v in scores.items())
        print(
            f"finished: {run_dir}  accuracy on {datamodule.score_subset}: {summary} "
            f"({cfg.eval.checkpoint}.ckpt)"
        )
        return metrics
    finally:
        finish_wandb(exit_code)


def _reset_peak_memory() -> None:
    """Start this run's peaks from now: a basic-launcher multirun trains many runs in one
    process, whose `ru_maxrss` never goes down. Linux resets the high-water mark on writing
    5 to clear_refs (elsewhere the peak is the process's so far)."""
    import sys

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():  # never start CUDA just for this
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> dict[str, Any]:
    """Peak host RSS of this process and peak CUDA memory allocated by torch (None off CUDA),
    in MiB. DataLoader worker processes are not included (their own RSS)."""
    import resource
    import sys

    import torch

    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    try:  # VmHWM: the same peak, but reset per run by `_reset_peak_memory`
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                rss_kib = int(line.split()[1])
                break
    except (OSError, ValueError, IndexError):
        if sys.platform == "darwin":  # ru_maxrss is in bytes there
            rss_kib //= 1024
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    return {
        "peak_host_rss_mb": round(rss_kib / 1024, 1),
        "peak_device_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
    }


def _keep_reported(run_dir: Path, reported: Path, keep: str, save_weights_only: Any) -> None:
    """Finished runs keep only the reported checkpoint, weights only (unless keep=all).
    The reported one is rewritten first, the other deleted last: while the other exists the
    compaction may be unfinished (`_finish_compaction`)."""
    if keep == "all":
        return
    save_weights_only(reported, reported)
    for other in ("last.ckpt", "best.ckpt"):
        if other != reported.name:
            (run_dir / other).unlink(missing_ok=True)


def _finish_compaction(run_dir: Path, cfg: DictConfig) -> None:
    """Redo `_keep_reported` for a finished run killed during it (the other checkpoint is
    still there); nothing to do, and nothing read, otherwise."""
    if cfg.train.keep_checkpoints == "all":
        return
    reported = run_dir / f"{cfg.eval.checkpoint}.ckpt"
    other = run_dir / ("best.ckpt" if reported.name == "last.ckpt" else "last.ckpt")
    if other.exists() and reported.exists():
        from fer.checkpoint_io import save_weights_only

        _keep_reported(run_dir, reported, cfg.train.keep_checkpoints, save_weights_only)


def make_datamodule(cfg: DictConfig) -> Any:
    """The run's FERDataModule from its composed config (datasets, split, classes, input)."""
    from hydra.utils import instantiate

    return instantiate(
        cfg.datamodule,
        data=cfg.data,
        split=cfg.split,
        classes=list(check_classes(cfg.classes)),
        input=cfg.model.input,
        cache_dir=cfg.paths.cache_dir,
        preprocess=cfg.preprocess,
        target=cfg.get("target"),
        train_on=cfg.strategy.get("train_on", "auto"),
        seed=int(cfg.seed),
        _convert_="all",
    )

r"""The bad-input catalogue (issue 9, item 4): every way a user's input can be wrong ends in ONE
clear message naming the file or key and what was expected — our own exception types, turned
into `error: <message>` and a non-zero exit by `fer.cli.run_job` — or, for files that can be
skipped, in a listed reason and a count. Never a library traceback.

Cases run in-process (each calls the real entrypoint task or library function; only three
start `train.py` as a subprocess, concurrently, in the background). Test ids are
`<category>-<case>`, categories: config, data_root, files, csv, classes, checkpoints, output:
`pytest tests/test_bad_inputs.py --collect-only -q | grep -o '\[[a-z_]*-' | sort | uniq -c`
counts them. Full disks and unwritable folders are simulated (tests run as root, so `chmod`
cannot refuse a write): `os.fsync`, `os.mkdir` and `tempfile.mkstemp` raise what the OS would.
"""

from __future__ import annotations

import copy
import csv
import errno
import io
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import hydra.errors
import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from fer.cli import run_job
from fer.data.preprocess import Settings, excluded_report, load_faces, table1
from fer.data.sources import fer2013, folder
from fer.errors import ConfigError, DataError, FerError
from fer.evaluate import evaluate
from fer.export import export
from fer.models.build import build_model
from fer.predict import predict
from fer.train import make_datamodule, train

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SUBPROCESS_ENV = {**os.environ, "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1"}


# ------------------------------------------------------------------------------- harness


@dataclass
class Ctx:
    """What a case needs: a temp dir, the composed-and-shrunk config, monkeypatch, request."""

    tmp: Path
    make_cfg: Callable[..., DictConfig]
    cache: Path
    monkeypatch: pytest.MonkeyPatch
    request: pytest.FixtureRequest

    def cfg(self, *overrides: str) -> DictConfig:
        """The shrunk config (tiny synthetic data; another dataset is used as it is). The
        default one is composed once (a composition costs ~0.3 s) and copied."""
        if not overrides:
            if "base" not in _COMPOSED:
                _COMPOSED["base"] = self.make_cfg()
            cfg = copy.deepcopy(_COMPOSED["base"])
            with open_dict(cfg):
                cfg.paths.run_dir = str(self.tmp / "run")
            return cfg
        other = any(o.startswith("data=") and "synthetic" not in o for o in overrides)
        cfg = self.make_cfg(*overrides, tiny=not other)
        with open_dict(cfg):
            cfg.trainer.max_epochs = 1
        return cfg


_COMPOSED: dict[str, DictConfig] = {}


@dataclass(frozen=True)
class Case:
    category: str
    name: str
    run: Callable[[Ctx], None]

    @property
    def id(self) -> str:
        return f"{self.category}-{self.name}"


CASES: list[Case] = []


def case(category: str, name: str) -> Callable[[Callable[[Ctx], None]], Callable[[Ctx], None]]:
    def register(fn: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
        CASES.append(Case(category, name, fn))
        return fn

    return register


def exits(task: Callable[[DictConfig], Any], cfg: DictConfig, kind: type, match: str) -> str:
    """`run_job(task, cfg)` — what every entrypoint does — ends with one line `error: …`
    (SystemExit with a message: exit status 1) caused by our `kind`, matching `match`."""
    with pytest.raises(SystemExit) as stop:
        run_job(task, cfg)
    message = stop.value.code
    assert isinstance(message, str) and message.startswith("error: "), message
    assert "\n" not in message and "Traceback" not in message, message
    assert re.search(match, message), message
    cause = stop.value.__context__  # the exception run_job turned into the exit
    assert isinstance(cause, kind), repr(cause)
    return message


def raises(fn: Callable[[], Any], kind: type, match: str) -> str:
    """`fn()` raises our `kind` (a FerError: run_job prints it as one line) matching `match`."""
    assert issubclass(kind, FerError)
    with pytest.raises(kind) as err:
        fn()
    message = str(err.value)
    assert "\n" not in message, message
    assert re.search(match, message), message
    return message


def hydra_refuses(kind: type, match: str, *overrides: str) -> str:
    """Hydra's composition error (raised before any task runs; Hydra prints it without a
    traceback, STYLE.md §7) names the key or option."""
    with initialize_config_dir(str(CONF), version_base="1.3"), pytest.raises(kind) as err:
        compose("train", overrides=list(overrides))
    assert re.search(match, str(err.value)), str(err.value)
    return str(err.value)


def setup_data(cfg: DictConfig) -> None:
    """The data half of a training job: scan, preprocess, split (what trainer.fit runs first)."""
    make_datamodule(cfg).setup("fit")


def compose_other(config: str, *overrides: str) -> DictConfig:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(config, overrides=list(overrides))


def image(path: Path, value: int = 128, size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    assert cv2.imwrite(str(path), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return path


def jaffe_tree(root: Path) -> Path:
    for name in ("KA.AN1.39.tiff", "KA.HA1.40.tiff", "KM.SA1.41.tiff"):
        image(root / name)
    return root


def fer2013_tree(root: Path, rows: list[tuple[str, str, str]] | None = None) -> Path:
    """`root/fer2013.csv` with (emotion, pixels, Usage) rows (default: two good rows)."""
    good = " ".join(["7"] * 2304)
    rows = rows if rows is not None else [("0", good, "Training"), ("3", good, "PrivateTest")]
    write_csv(root / "fer2013.csv", ["emotion", "pixels", "Usage"], rows)
    return root


def write_csv(path: Path, header: list[str], rows: list[tuple[str, ...]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


GOOD_PIXELS = " ".join(["7"] * 2304)


def fake_run(
    ctx: Ctx, checkpoint: Any = None, raw: bytes | None = None, overrides: tuple[str, ...] = ()
) -> Path:
    """A finished run directory as train.py leaves it (config.yaml, metrics.json, last.ckpt),
    without training: `checkpoint` is torch.saved, `raw` written as the file's bytes."""
    cfg = ctx.cfg(*overrides)
    run = Path(cfg.paths.run_dir)
    run.mkdir(parents=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    (run / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    (run / "metrics.json").write_text(json.dumps({"status": "finished"}))
    if checkpoint is not None:
        torch.save(checkpoint, run / "last.ckpt")
    if raw is not None:
        (run / "last.ckpt").write_bytes(raw)
    return run


def other_architecture() -> dict[str, Any]:
    """A Lightning-style checkpoint of a different network (timm's tiny test_resnet)."""
    import timm

    net = timm.create_model("test_resnet", num_classes=6)
    return {"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "epoch": 1}


def evaluate_task(ctx: Ctx, run: Path, *extra: str) -> Callable[[DictConfig], Any]:
    cfg = compose_other(
        "evaluate", f"runs={run}", f"paths.cache_dir={ctx.cache}", "logger=none", *extra
    )

    def task(_: DictConfig) -> Any:
        with initialize_config_dir(str(CONF), version_base="1.3"):  # evaluate composes data
            return evaluate(cfg)

    return task


def predict_cfg(ctx: Ctx, run: Path, inputs: Path, *extra: str) -> DictConfig:
    return compose_other(
        "predict",
        f"run={run}",
        f"input={inputs}",
        f"out={ctx.tmp / 'predicted'}",
        f"paths.cache_dir={ctx.cache}",
        "predict.progress=false",
        "predict.face_check=false",
        *extra,
    )


def refuse(exc: BaseException) -> Callable[..., Any]:
    """A stand-in for an OS call that fails with `exc`."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return fail


ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def refuse_mkdir_under(ctx: Ctx, root: Path) -> None:
    """`os.mkdir` refuses (EACCES) to create anything in `root`: a folder the user cannot
    write (deeper paths fail first with ENOENT, as they do, until their parent is `root`)."""
    real = os.mkdir

    def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path).parent == root:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        real(path, *args, **kwargs)

    root.mkdir(parents=True, exist_ok=True)
    ctx.monkeypatch.setattr(os, "mkdir", mkdir)


def refuse_files_in(ctx: Ctx, folder: Path) -> None:
    """`tempfile.mkstemp` (how fer.io starts every atomic write) refuses in `folder`."""
    real = tempfile.mkstemp

    def mkstemp(*args: Any, **kwargs: Any) -> Any:
        where = kwargs.get("dir")
        if where is not None and Path(where) == folder:
            name = f"{kwargs.get('prefix', '')}XXXXXX{kwargs.get('suffix', '')}"
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder / name))
        return real(*args, **kwargs)

    ctx.monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


# ------------------------------------------------------- subprocesses (in the background)

SUBPROCESS = {
    "seed_not_integer": ["seed=abc"],
    "root_empty": ["data=jaffe", "data.root={tmp}/empty"],
    "disk_full": ["--enospc"],
}


@pytest.fixture(scope="module")
def background(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.Popen]:
    """`python train.py …` for the subprocess cases, all started at once (imports cost
    ~6 s per process): each case waits for its own."""
    tmp = tmp_path_factory.mktemp("entry")
    (tmp / "empty").mkdir()
    procs = {}
    for name, args in SUBPROCESS.items():
        common = [
            f"paths.output_root={tmp / name / 'outputs'}",
            f"paths.cache_dir={tmp / name / 'cache'}",
            "logger=none",
        ]
        if args == ["--enospc"]:  # train.py with a full disk: every fsync fails
            code = (
                "import errno, os, runpy, sys\n"
                "def full(fd): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
                "os.fsync = full\n"
                "sys.argv = ['train.py', *sys.argv[1:]]\n"
                "runpy.run_path('train.py', run_name='__main__')\n"
            )
            cmd = [sys.executable, "-c", code, *common]
        else:
            cmd = [sys.executable, "train.py", *common, *(a.format(tmp=tmp) for a in args)]
        procs[name] = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=SUBPROCESS_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    yield procs
    for p in procs.values():
        if p.poll() is None:
            p.kill()
            p.wait()


def entrypoint_exits(ctx: Ctx, name: str, match: str) -> None:
    proc = ctx.request.getfixturevalue("background")[name]
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, out[-2000:]
    assert "Traceback" not in out + err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err[-3000:]
    assert re.search(match, errors[0]), errors[0]


# ------------------------------------------------------------------------------- config


@case("config", "entrypoint_seed_not_integer")  # first: starts the subprocesses early
def _(ctx: Ctx) -> None:
    entrypoint_exits(ctx, "seed_not_integer", r"^error: seed='abc': expected an integer >= 0$")


@case("config", "option_unknown")
def _(ctx: Ctx) -> None:
    text = hydra_refuses(
        hydra.errors.MissingConfigException, r"Could not find 'model/nope'", "model=nope"
    )
    assert "Available options in 'model'" in text and "small_vgg_se" in text


@case("config", "option_misspelt")
def _(ctx: Ctx) -> None:
    hydra_refuses(
        hydra.errors.MissingConfigException,
        r"Could not find 'preprocess/landmark'",
        "preprocess=landmark",
    )


@case("config", "key_misspelt")
def _(ctx: Ctx) -> None:
    hydra_refuses(
        hydra.errors.ConfigCompositionException,
        r"Could not override 'trainer\.max_epoch'",
        "trainer.max_epoch=3",
    )


@case("config", "key_not_in_group")
def _(ctx: Ctx) -> None:  # synthetic data has no root: a key of another data config
    hydra_refuses(
        hydra.errors.ConfigCompositionException, r"Could not override 'data\.root'", "data.root=/x"
    )


@case("config", "fold_out_of_range")
def _(ctx: Ctx) -> None:
    cfg = ctx.cfg("split.k=10", "split.fold=12")
    exits(
        train, cfg, ConfigError, r"split\.fold=12 is out of range: allowed 0\.\.9 \(split\.k=10\)"
    )
    assert not Path(cfg.paths.run_dir).exists()  # stopped before any work


@case("config", "k_below_two")
def _(ctx: Ctx) -> None:
    exits(
        train, ctx.cfg("split.k=1", "split.fold=0"), ConfigError, r"split\.k=1 is invalid: .*k >= 2"
    )


@case("config", "k_exceeds_subjects")
def _(ctx: Ctx) -> None:  # the tiny synthetic set has 10 subjects
    exits(
        setup_data,
        ctx.cfg("split.k=50", "split.fold=0"),
        ConfigError,
        r"split\.k=50 exceeds the number of subject groups \(10\)",
    )


@case("config", "k_exceeds_images_per_class")
def _(ctx: Ctx) -> None:  # image-level folds: 20 images per class < 50 folds (sklearn's check)
    exits(
        setup_data,
        ctx.cfg("split.k=50", "split.fold=0", "split.group_by=none"),
        ConfigError,
        r"split\.k=50: cannot make 50 stratified folds of this data",
    )


@case("config", "group_by_unknown")
def _(ctx: Ctx) -> None:
    exits(
        train, ctx.cfg("split.group_by=image"), ConfigError, r"split\.group_by='image' is invalid"
    )


@case("config", "max_epochs_not_integer")
def _(ctx: Ctx) -> None:
    cfg = ctx.cfg("trainer.max_epochs=abc")
    with open_dict(cfg):
        cfg.trainer.max_epochs = "abc"  # what Hydra made of the override (make_cfg shrinks it)
    exits(train, cfg, ConfigError, r"trainer\.max_epochs='abc': expected an integer >= 1")


@case("config", "batch_size_zero")
def _(ctx: Ctx) -> None:
    exits(
        train,
        ctx.cfg("datamodule.batch_size=0"),
        ConfigError,
        r"datamodule\.batch_size=0: must be >= 1",
    )


@case("config", "lr_not_number")
def _(ctx: Ctx) -> None:
    exits(
        train,
        ctx.cfg("optimizer.lr=fast"),
        ConfigError,
        r"optimizer\.lr='fast': expected a positive number",
    )


@case("config", "fine_tune_random_weights")
def _(ctx: Ctx) -> None:
    exits(
        train,
        ctx.cfg("strategy=fc"),
        ConfigError,
        r"strategy=fc fine-tunes a pretrained model but init=glorot",
    )


@case("config", "checkpoint_init_without_path")
def _(ctx: Ctx) -> None:
    exits(train, ctx.cfg("init=checkpoint"), ConfigError, r"init=checkpoint: init\.path is not set")


@case("config", "imagenet_for_small_vgg")
def _(ctx: Ctx) -> None:
    exits(
        train,
        ctx.cfg("init=imagenet"),
        ConfigError,
        r"no ImageNet weights exist for model\.arch='small_vgg'",
    )


@case("config", "imagenet_file_missing")
def _(ctx: Ctx) -> None:
    missing = ctx.tmp / "vgg16.pth"
    exits(
        train,
        ctx.cfg("model=vgg16", "init=imagenet", f"init.weights_path={missing}"),
        ConfigError,
        rf"ImageNet weights for vgg16 not found \(expected file: {re.escape(str(missing))}\)",
    )


@case("config", "attention_block_out_of_range")
def _(ctx: Ctx) -> None:  # now refused at start-up, before the data is scanned
    cfg = ctx.cfg("model=small_vgg_se", "model.attention.after_blocks=[7]")
    exits(
        train,
        cfg,
        ConfigError,
        r"model\.attention\.after_blocks=\[7\]: distinct block numbers in 1\.\.2",
    )
    assert not Path(cfg.paths.run_dir).exists()


@case("config", "timm_model_unknown")
def _(ctx: Ctx) -> None:
    cfg = ctx.cfg("model=timm", "model.name=resnet_nope")
    exits(
        lambda c: build_model(c.model, c.init, 6),
        cfg,
        ConfigError,
        r"model\.name='resnet_nope' is not a timm model",
    )


@case("config", "target_without_holdout")
def _(ctx: Ctx) -> None:
    exits(
        train,
        ctx.cfg("+data@target=synthetic_gray"),
        ConfigError,
        r"data@target.*needs split=holdout",
    )


@case("config", "eval_checkpoint_unknown")
def _(ctx: Ctx) -> None:
    exits(
        train,
        ctx.cfg("eval.checkpoint=middle"),
        ConfigError,
        r"eval\.checkpoint='middle': allowed last \| best",
    )


@case("config", "eval_dataset_unknown")
def _(ctx: Ctx) -> None:
    run = fake_run(ctx, other_architecture())
    exits(
        evaluate_task(ctx, run, "eval.datasets=[synthetic_grey]"),
        OmegaConf.create({}),
        ConfigError,
        r"eval\.datasets: .*Could not find 'data/synthetic_grey'.*synthetic_gray",
    )


@case("config", "predict_without_run")
def _(ctx: Ctx) -> None:
    cfg = compose_other("predict", f"input={ctx.tmp}")
    exits(predict, cfg, ConfigError, r"run= is required: python predict\.py run=<run-dir>")


@case("config", "trainer_gpu_without_gpu")
def _(ctx: Ctx) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: trainer.accelerator=gpu is valid here")
    exits(
        train,
        ctx.cfg("trainer.accelerator=gpu"),
        Exception,
        r"^error: trainer: No supported gpu backend found!",
    )


# ---------------------------------------------------------------------------- data root


@case("data_root", "not_set")
def _(ctx: Ctx) -> None:  # paths.roots.jaffe is null until the user sets it
    exits(
        train,
        ctx.cfg("data=jaffe"),
        ConfigError,
        r"data\.root is not set for jaffe: set it in conf/local/default\.yaml",
    )


@case("data_root", "missing")
def _(ctx: Ctx) -> None:
    root = ctx.tmp / "jaffe"
    cfg = ctx.cfg("data=jaffe", f"data.root={root}")
    exits(
        train,
        cfg,
        ConfigError,
        rf"data\.root={re.escape(str(root))}: no such directory; expected the folder of jaffe",
    )


@case("data_root", "is_a_file")
def _(ctx: Ctx) -> None:
    file = ctx.tmp / "jaffe.zip"
    file.write_bytes(b"PK")
    exits(
        train,
        ctx.cfg("data=jaffe", f"data.root={file}"),
        ConfigError,
        r"data\.root=.*jaffe\.zip: is a file; expected the folder of jaffe",
    )


@case("data_root", "empty")
def _(ctx: Ctx) -> None:
    (ctx.tmp / "empty").mkdir()
    exits(
        setup_data,
        ctx.cfg("data=jaffe", f"data.root={ctx.tmp / 'empty'}"),
        DataError,
        r"empty does not look like jaffe: expected a flat folder of JAFFE images named",
    )


@case("data_root", "entrypoint_empty")
def _(ctx: Ctx) -> None:  # through train.py, Lightning's fit and Hydra: still one line
    entrypoint_exits(ctx, "root_empty", r"^error: .*empty does not look like jaffe: expected")


@case("data_root", "jaffe_at_fer2013_tree")
def _(ctx: Ctx) -> None:
    root = fer2013_tree(ctx.tmp / "fer2013")
    exits(
        setup_data,
        ctx.cfg("data=jaffe", f"data.root={root}"),
        DataError,
        r"fer2013 does not look like jaffe",
    )


@case("data_root", "fer2013_at_jaffe_tree")
def _(ctx: Ctx) -> None:
    root = jaffe_tree(ctx.tmp / "jaffe")
    exits(
        setup_data,
        ctx.cfg("data=fer2013", f"data.root={root}", "split=holdout"),
        DataError,
        r"jaffe does not look like fer2013: expected a FER2013 CSV",
    )


@case("data_root", "faces_at_jaffe_tree")
def _(ctx: Ctx) -> None:
    root = jaffe_tree(ctx.tmp / "jaffe")
    exits(
        setup_data,
        ctx.cfg("data=faces", f"data.root={root}"),
        DataError,
        r"jaffe does not look like faces",
    )


@case("data_root", "folder_at_jaffe_tree")
def _(ctx: Ctx) -> None:  # flat files, no class folders
    root = jaffe_tree(ctx.tmp / "jaffe")
    exits(
        setup_data,
        ctx.cfg("data=folder", f"data.root={root}"),
        DataError,
        r"jaffe does not look like folder: expected class folders root/<class>/<images>",
    )


@case("data_root", "target_root_missing")
def _(ctx: Ctx) -> None:
    root = ctx.tmp / "jaffe"
    cfg = ctx.cfg("split=holdout", "+data@target=jaffe", f"target.root={root}")
    exits(
        train,
        cfg,
        ConfigError,
        r"target\.root=.*jaffe: no such directory; expected the folder of jaffe",
    )


@case("data_root", "predict_input_missing")
def _(ctx: Ctx) -> None:
    run = fake_run(ctx, other_architecture())
    cfg = predict_cfg(ctx, run, ctx.tmp / "photos")
    exits(predict, cfg, DataError, r"input=.*photos: no such file or folder")


@case("data_root", "evaluate_runs_match_nothing")
def _(ctx: Ctx) -> None:
    exits(
        evaluate_task(ctx, ctx.tmp / "outputs" / "*"),
        OmegaConf.create({}),
        DataError,
        r"runs=.*outputs/\*: no run directory \(a folder holding config\.yaml\) matches",
    )


# -------------------------------------------------------------------------------- files


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims `width`×`height` pixels (its data is one empty row)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


#: case -> (file under root/<class>/, the reason its skip row must give)
BAD_FILES = {
    "zero_byte_jpg": ("anger/s1_empty.jpg", r"^unreadable image: cannot identify image file"),
    "truncated_jpg": ("anger/s2_truncated.jpg", r"^unreadable image: .*(?i:truncated)"),
    "truncated_png": ("anger/s3_truncated.png", r"^unreadable image: .*(?i:truncated|broken)"),
    "text_named_png": ("happiness/s1_text.png", r"^unreadable image: cannot identify image"),
    "huge_dimensions_header": (
        "happiness/s2_huge_header.png",
        r"^unreadable image: Image size \(\d+ pixels\) exceeds limit",
    ),
}
#: files the scan itself reports (never reach preprocessing)
SCAN_SKIPS = {
    "anger/s4_annex.jpg": r"^broken symbolic link \(target .*missing\.jpg is missing\)$",
    "anger/notes.txt": r"^not an image file$",
    "anger/._s1_ok.jpg": r"^macOS metadata file, not data$",
    "Thumbs.db": r"^system file, not data$",
}


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A class-folder dataset with 2 good images per class and every kind of bad file,
    scanned and preprocessed once (method none: the images are used as crops)."""
    root = tmp_path_factory.mktemp("messy") / "data"
    for cls in ("anger", "happiness"):
        for i in (1, 2):
            image(root / cls / f"s{i}_ok.jpg", value=i)
    whole = (root / "anger" / "s1_ok.jpg").read_bytes()
    (root / "anger" / "s1_empty.jpg").write_bytes(b"")
    (root / "anger" / "s2_truncated.jpg").write_bytes(whole[: len(whole) // 2])
    buf = io.BytesIO()
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(buf, format="PNG")
    (root / "anger" / "s3_truncated.png").write_bytes(buf.getvalue()[:60])
    (root / "happiness" / "s1_text.png").write_text("this is not an image\n")
    (root / "happiness" / "s2_huge_header.png").write_bytes(_png_header(100_000, 100_000))
    os.symlink(root / "missing.jpg", root / "anger" / "s4_annex.jpg")  # git-annex, no content
    (root / "anger" / "notes.txt").write_text("x")
    (root / "anger" / "._s1_ok.jpg").write_bytes(b"\0")
    (root / "Thumbs.db").write_bytes(b"\0")
    manifest = folder.scan(root, subject_regex=r"^[^/]+/(s\d+)_")
    faces = load_faces(
        manifest,
        Settings(method="none", size=32),
        tmp_path_factory.mktemp("messy_cache"),
        progress=False,
    )
    return {"root": root, "manifest": manifest, "faces": faces}


def _file_case(name: str, rel: str, reason: str) -> None:
    @case("files", name)
    def _(ctx: Ctx) -> None:
        m = ctx.request.getfixturevalue("messy")
        faces = m["faces"]
        rows = faces.skipped[faces.skipped["path"] == str(m["root"] / rel)]
        assert len(rows) == 1, faces.skipped
        assert re.search(reason, rows["reason"].iloc[0]), rows["reason"].iloc[0]
        assert "\n" not in rows["reason"].iloc[0]
        assert str(m["root"] / rel) in set(excluded_report(faces)["path"])  # listed
        counts = table1(m["manifest"], faces).set_index("class")  # and counted
        assert counts.loc["anger"].to_dict() == {
            "original": 5,
            "processed": 2,
            "unreadable": 3,
            "excluded": 0,
            "excluded_pct": 60.0,
        }
        assert counts.loc["happiness", "unreadable"] == 2
        assert counts.loc["happiness", "processed"] == 2


for _name, (_rel, _reason) in BAD_FILES.items():
    _file_case(_name, _rel, _reason)


@case("files", "scan_reports_non_data_files")
def _(ctx: Ctx) -> None:
    m = ctx.request.getfixturevalue("messy")
    skipped = dict(m["manifest"].skipped[["path", "reason"]].itertuples(index=False))
    assert len(skipped) == len(SCAN_SKIPS)
    for rel, reason in SCAN_SKIPS.items():
        assert re.search(reason, skipped[str(m["root"] / rel)]), skipped


@case("files", "every_file_unreadable")
def _(ctx: Ctx) -> None:
    root = ctx.tmp / "data"
    for cls in ("anger", "happiness"):
        (root / cls).mkdir(parents=True)
        (root / cls / "s1_a.jpg").write_bytes(b"")
        (root / cls / "s2_b.png").write_text("nope")
    cfg = ctx.cfg(
        "data=folder",
        f"data.root={root}",
        "data.cache_size=32",
        "preprocess=none",
        "classes=[anger,happiness]",
    )
    exits(
        setup_data,
        cfg,
        DataError,
        r"dataset folder: no usable face after preprocessing \(4 file\(s\) skipped, "
        r"e\.g\. .*s1_a\.jpg: unreadable image: cannot identify image file",
    )


@case("files", "predict_lists_unusable")
def _(ctx: Ctx) -> None:
    run = fake_run(ctx, other_architecture())
    photos = ctx.tmp / "photos"
    photos.mkdir()
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "text.png").write_text("nope")
    (photos / "notes.txt").write_text("x")
    exits(
        predict,
        predict_cfg(ctx, run, photos),
        DataError,
        r"input=.*photos: no usable image \(3 listed with reasons in .*unusable\.csv\)",
    )
    with open(ctx.tmp / "predicted" / "unusable.csv", newline="") as f:
        listed = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(f)}
    assert listed["notes.txt"] == "not an image file (.txt extension)"
    assert listed["empty.jpg"].startswith("unreadable image: cannot identify image file")
    assert listed["text.png"].startswith("unreadable image: cannot identify image file")


# ---------------------------------------------------------------------------------- csv


def _fer_setup(ctx: Ctx, root: Path) -> DictConfig:
    return ctx.cfg("data=fer2013", f"data.root={root}", "split=holdout")


@case("csv", "missing_pixels_column")
def _(ctx: Ctx) -> None:
    root = ctx.tmp / "fer"
    write_csv(root / "fer2013.csv", ["emotion", "Usage"], [("0", "Training")])
    exits(
        setup_data,
        _fer_setup(ctx, root),
        DataError,
        r"does not look like fer2013: .*; "
        r"found fer2013\.csv: not a FER2013 CSV \(no pixels column\)",
    )


@case("csv", "missing_usage_column")
def _(ctx: Ctx) -> None:
    root = ctx.tmp / "fer"
    write_csv(root / "fer2013.csv", ["emotion", "pixels"], [("0", GOOD_PIXELS)])
    exits(
        setup_data,
        _fer_setup(ctx, root),
        DataError,
        r"found fer2013\.csv: CSV without a Usage column: official split unknown",
    )


@case("csv", "missing_emotion_column")
def _(ctx: Ctx) -> None:
    root = ctx.tmp / "fer"
    write_csv(root / "fer2013.csv", ["pixels", "Usage"], [(GOOD_PIXELS, "Training")])
    exits(
        setup_data,
        _fer_setup(ctx, root),
        DataError,
        r"found fer2013\.csv: CSV without an emotion column \(unlabelled test set\)",
    )


@case("csv", "every_row_short")
def _(ctx: Ctx) -> None:
    root = fer2013_tree(ctx.tmp / "fer", [("0", "1 2 3", "Training"), ("3", "4 5", "PublicTest")])
    exits(
        setup_data,
        _fer_setup(ctx, root),
        DataError,
        r"found 2 CSV row\(s\) skipped, "
        r"e\.g\. fer2013\.csv::0: 3 pixel values, expected 2304 \(48×48\)",
    )


@case("csv", "not_utf8")
def _(ctx: Ctx) -> None:
    root = fer2013_tree(ctx.tmp / "fer", [("0", GOOD_PIXELS, "Training")] * 8)
    with open(root / "fer2013.csv", "ab") as f:  # past the header: found while parsing rows
        f.write(b"0,\xff\xfe,Training\n")
    exits(
        setup_data,
        _fer_setup(ctx, root),
        DataError,
        r"fer2013\.csv: unreadable CSV \(UnicodeDecodeError: .*\); expected UTF-8 text",
    )


@case("csv", "single_file_without_pixels")
def _(ctx: Ctx) -> None:  # data.root may name the CSV itself
    path = write_csv(ctx.tmp / "labels.csv", ["emotion", "Usage"], [("0", "Training")])
    raises(
        lambda: fer2013.scan(path),
        DataError,
        r"labels\.csv does not look like fer2013: .*found labels\.csv: not a FER2013 CSV",
    )


#: (row as written, the reason its skip row must give)
BAD_ROWS = {
    "short_pixel_row": (("0", "1 2 3", "Training"), r"^3 pixel values, expected 2304 \(48×48\)$"),
    "pixels_not_integers": (
        ("0", "1 x" + GOOD_PIXELS[3:], "Training"),
        r"^pixels are not space-separated integers$",
    ),
    "pixel_out_of_range": (
        ("0", "256" + GOOD_PIXELS[1:], "Training"),
        r"^pixel value outside 0\.\.255$",
    ),
    "missing_field": (("0", GOOD_PIXELS), r"^expected 3 fields, got 2$"),
    "unknown_emotion_code": (("9", GOOD_PIXELS, "Training"), r"^unknown emotion code '9'$"),
    "unknown_usage": (("0", GOOD_PIXELS, "Validation"), r"^unknown Usage 'Validation'$"),
}


def _row_case(name: str, row: tuple[str, ...], reason: str) -> None:
    @case("csv", name)
    def _(ctx: Ctx) -> None:
        good = [("0", GOOD_PIXELS, "Training"), ("3", GOOD_PIXELS, "PrivateTest")]
        root = fer2013_tree(ctx.tmp / "fer", [good[0], row, good[1]])  # type: ignore[list-item]
        m = fer2013.scan(root)
        assert len(m) == 2  # counted: the two good rows
        assert list(m.skipped["path"]) == [f"{root / 'fer2013.csv'}::1"]  # listed, by row
        assert re.search(reason, m.skipped["reason"].iloc[0]), m.skipped["reason"].iloc[0]


for _name, (_row, _reason) in BAD_ROWS.items():
    _row_case(_name, _row, _reason)


# ------------------------------------------------------------------------------ classes


@case("classes", "unknown_class")
def _(ctx: Ctx) -> None:
    exits(
        train,
        ctx.cfg("classes=[anger,happy]"),
        ConfigError,
        r"classes: unknown class\(es\) \['happy'\]; canonical classes are \['anger'",
    )


@case("classes", "repeated_class")
def _(ctx: Ctx) -> None:
    exits(
        train,
        ctx.cfg("classes=[anger,anger]"),
        ConfigError,
        r"classes: repeated class in \['anger', 'anger'\]",
    )


@case("classes", "empty_class_list")
def _(ctx: Ctx) -> None:
    exits(train, ctx.cfg("classes=[]"), ConfigError, r"classes: the class list is empty")


@case("classes", "alias_to_unknown_class")
def _(ctx: Ctx) -> None:
    root = ctx.tmp / "data"
    image(root / "joy" / "a.png")
    cfg = ctx.cfg("data=folder", f"data.root={root}", "+data.source.aliases={joy: joyful}")
    exits(
        setup_data,
        cfg,
        ConfigError,
        r"data\.source\.aliases: alias 'joy' -> 'joyful' is not a canonical class",
    )


@case("classes", "dataset_lacks_every_class")
def _(ctx: Ctx) -> None:
    exits(
        setup_data,
        ctx.cfg("classes=[contempt]"),
        DataError,
        r"dataset synthetic_lab: no images of the classes \['contempt'\]",
    )


@case("classes", "target_shares_no_class")
def _(ctx: Ctx) -> None:  # the model's six classes; the target holds only neutral faces
    root = ctx.tmp / "target"
    for i in range(3):
        image(root / "neutral" / f"s{i}_a.png", value=i)
    cfg = ctx.cfg("split=holdout", "+data@target=folder", f"target.root={root}")
    exits(
        setup_data,
        cfg,
        DataError,
        r"dataset folder: no images of the classes "
        r"\['anger', 'disgust', 'fear', 'happiness', 'sadness', 'surprise'\]",
    )


@case("classes", "checkpoint_head_of_other_classes")
def _(ctx: Ctx) -> None:  # a 7-class source model, a 6-class experiment, init.head=keep
    seven = build_model(ctx.cfg().model, {"name": "glorot"}, 7)
    path = ctx.tmp / "seven.pt"
    torch.save(seven.state_dict(), path)
    cfg = ctx.cfg("init=checkpoint", f"init.path={path}")
    exits(
        lambda c: build_model(c.model, c.init, 6),
        cfg,
        ConfigError,
        r"init\.path=.*seven\.pt: the classifier head differs "
        r".*the class lists differ: use init\.head=drop",
    )


# -------------------------------------------------------------------------- checkpoints


def _init_from(ctx: Ctx, path: Path) -> tuple[Callable[[DictConfig], Any], DictConfig]:
    return (lambda c: build_model(c.model, c.init, 6)), ctx.cfg(
        "init=checkpoint", f"init.path={path}"
    )


@case("checkpoints", "init_from_other_architecture")
def _(ctx: Ctx) -> None:
    path = ctx.tmp / "resnet.ckpt"
    torch.save(other_architecture(), path)
    exits(
        *_init_from(ctx, path),
        ConfigError,
        r"init\.path=.*resnet\.ckpt does not match the model: \d+ key\(s\) missing from the file: "
        r".*; \d+ key\(s\) unexpected in the file: .*\(init\.strict=false loads the matching",
    )


@case("checkpoints", "init_not_a_state_dict")
def _(ctx: Ctx) -> None:
    path = ctx.tmp / "list.pt"
    torch.save([1, 2, 3], path)
    exits(
        *_init_from(ctx, path),
        DataError,
        r"list\.pt: neither a Lightning checkpoint nor a state dict of tensors",
    )


@case("checkpoints", "init_text_file")
def _(ctx: Ctx) -> None:
    path = ctx.tmp / "notes.ckpt"
    path.write_text("hello\n")
    exits(
        *_init_from(ctx, path),
        DataError,
        r"notes\.ckpt: not a PyTorch weights file; expected a state dict",
    )


@case("checkpoints", "init_empty_file")
def _(ctx: Ctx) -> None:
    path = ctx.tmp / "empty.ckpt"
    path.write_bytes(b"")
    exits(*_init_from(ctx, path), DataError, r"empty\.ckpt: unreadable weights file \(")


@case("checkpoints", "init_truncated_file")
def _(ctx: Ctx) -> None:
    buf = io.BytesIO()
    torch.save(build_model(ctx.cfg().model, {"name": "glorot"}, 6).state_dict(), buf)
    path = ctx.tmp / "cut.ckpt"
    path.write_bytes(buf.getvalue()[:4096])
    exits(
        *_init_from(ctx, path),
        DataError,
        r"cut\.ckpt: unreadable weights file \(PytorchStreamReader failed",
    )


@case("checkpoints", "imagenet_file_of_other_architecture")
def _(ctx: Ctx) -> None:  # torchvision VGG16 path: a state dict of another network
    path = ctx.tmp / "vgg16.pth"
    torch.save(build_model(ctx.cfg().model, {"name": "glorot"}, 6).state_dict(), path)
    cfg = ctx.cfg("model=vgg16", "init=imagenet", f"init.weights_path={path}")
    exits(
        lambda c: build_model(c.model, c.init, 6),
        cfg,
        ConfigError,
        r"ImageNet weights .*vgg16\.pth does not match the model: \d+ key\(s\) (missing|with a)",
    )


@case("checkpoints", "timm_imagenet_file_not_a_state_dict")
def _(ctx: Ctx) -> None:
    path = ctx.tmp / "weights.pth"
    torch.save(torch.zeros(3), path)
    cfg = ctx.cfg(
        "model=timm", "model.name=test_resnet", "init=imagenet", f"init.weights_path={path}"
    )
    exits(
        lambda c: build_model(c.model, c.init, 6),
        cfg,
        DataError,
        r"weights\.pth: not loadable as ImageNet weights of timm model test_resnet: "
        r"expected a state dict of its tensors",
    )


@case("checkpoints", "evaluate_other_architecture")
def _(ctx: Ctx) -> None:
    run = fake_run(ctx, other_architecture())
    exits(
        evaluate_task(ctx, run),
        OmegaConf.create({}),
        DataError,
        r"last\.ckpt: its tensors do not fit model\.arch=small_vgg with 6 classes",
    )


@case("checkpoints", "predict_other_architecture")
def _(ctx: Ctx) -> None:
    run = fake_run(ctx, other_architecture())
    photos = ctx.tmp / "photos"
    image(photos / "a.png", size=64)
    exits(
        predict,
        predict_cfg(ctx, run, photos),
        DataError,
        r"last\.ckpt: its tensors do not fit model\.arch=small_vgg",
    )


@case("checkpoints", "export_not_a_state_dict")
def _(ctx: Ctx) -> None:
    run = fake_run(ctx, ["not", "a", "checkpoint"])
    cfg = compose_other("export", f"run={run}", f"paths.cache_dir={ctx.cache}")
    exits(export, cfg, DataError, r"last\.ckpt: not a checkpoint or state dict \(found list\)")


@case("checkpoints", "evaluate_truncated_checkpoint")
def _(ctx: Ctx) -> None:
    buf = io.BytesIO()
    torch.save(other_architecture(), buf)
    run = fake_run(ctx, raw=buf.getvalue()[:1000])
    exits(
        evaluate_task(ctx, run),
        OmegaConf.create({}),
        DataError,
        r"last\.ckpt: unreadable checkpoint \(",
    )


@case("checkpoints", "evaluate_checkpoint_not_kept")
def _(ctx: Ctx) -> None:  # a finished run keeps only its reported checkpoint (last)
    run = fake_run(ctx, other_architecture(), overrides=("split=holdout",))
    exits(
        evaluate_task(ctx, run, "eval.checkpoint=best"),
        OmegaConf.create({}),
        DataError,
        r"best\.ckpt not found: the run kept only its reported checkpoint",
    )


@case("checkpoints", "evaluate_best_under_kfold")
def _(ctx: Ctx) -> None:
    run = fake_run(ctx, other_architecture())
    exits(
        evaluate_task(ctx, run, "eval.checkpoint=best"),
        OmegaConf.create({}),
        ConfigError,
        r"eval\.checkpoint=best for .*: "
        r"under k-fold the best epoch was chosen on the validation fold",
    )


@case("checkpoints", "evaluate_unfinished_run")
def _(ctx: Ctx) -> None:
    run = fake_run(ctx, other_architecture())
    (run / "metrics.json").unlink()
    exits(evaluate_task(ctx, run), OmegaConf.create({}), DataError, r"run: not a finished run")


# ------------------------------------------------------------------------- output / disk


@case("output", "output_root_not_writable")
def _(ctx: Ctx) -> None:
    root = ctx.tmp / "readonly"
    refuse_mkdir_under(ctx, root)
    cfg = ctx.cfg()
    with open_dict(cfg):
        cfg.paths.run_dir = str(root / "default" / "run")
    exits(
        train,
        cfg,
        PermissionError,
        rf"^error: {re.escape(str(root))}/default: Permission denied \(check",
    )


@case("output", "run_dir_not_writable")
def _(ctx: Ctx) -> None:
    cfg = ctx.cfg()
    run = Path(cfg.paths.run_dir)
    refuse_files_in(ctx, run)
    exits(
        train,
        cfg,
        PermissionError,
        rf"^error: {re.escape(str(run))}/config\.yaml: Permission denied",
    )


@case("output", "disk_full_writing_run_files")
def _(ctx: Ctx) -> None:
    ctx.monkeypatch.setattr(os, "fsync", refuse(ENOSPC))
    exits(train, ctx.cfg(), OSError, r"^error: .*/config\.yaml: No space left on device \(check")


@case("output", "disk_full_writing_cache")
def _(ctx: Ctx) -> None:
    cfg = ctx.cfg()
    with open_dict(cfg):
        cfg.paths.cache_dir = str(ctx.tmp / "fresh_cache")  # nothing cached: it must write
    ctx.monkeypatch.setattr(os, "fsync", refuse(ENOSPC))
    exits(setup_data, cfg, OSError, r"^error: .*/manifest\.csv: No space left on device")


@case("output", "predict_out_not_writable")
def _(ctx: Ctx) -> None:
    run = fake_run(ctx, other_architecture())
    photos = ctx.tmp / "photos"
    image(photos / "a.png", size=64)
    refuse_mkdir_under(ctx, ctx.tmp / "readonly")
    cfg = predict_cfg(ctx, run, photos, f"out={ctx.tmp / 'readonly' / 'out'}")
    exits(predict, cfg, PermissionError, r"^error: .*readonly/out: Permission denied")


@case("output", "entrypoint_disk_full")
def _(ctx: Ctx) -> None:
    entrypoint_exits(ctx, "disk_full", r"^error: .*/config\.yaml: No space left on device")


# --------------------------------------------------------------------------------- tests


@pytest.fixture
def ctx(
    tmp_path: Path,
    make_cfg: Callable[..., DictConfig],
    synthetic_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Ctx:
    return Ctx(tmp_path, make_cfg, synthetic_cache, monkeypatch, request)


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_bad_input(bad: Case, ctx: Ctx) -> None:
    bad.run(ctx)


def test_catalogue_size() -> None:
    """Issue 9 asks for at least 30 cases across the whole surface."""
    by_category: dict[str, int] = {}
    for c in CASES:
        by_category[c.category] = by_category.get(c.category, 0) + 1
    assert len({c.id for c in CASES}) == len(CASES)  # ids unique
    assert len(CASES) >= 30 and len(by_category) == 7, by_category

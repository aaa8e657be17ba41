"""FERDataModule: cached faces -> split -> albumentations -> DataLoaders.

Resume determinism (../shared/STYLE.md §7): the train sampler carries the epoch itself and
yields ``(index, epoch)`` pairs, so each sample seeds its augmentation from (seed, epoch,
index) in whichever worker loads it; the data module's ``state_dict`` restores the epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import lightning as L
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import DataLoader, Dataset, Sampler

from fer.data import splits
from fer.data.on_device import DeviceTrainData
from fer.data.preprocess import FaceArrays, load_faces, settings_from
from fer.errors import ConfigError, DataError
from fer.labels import REGIONS, check_classes


def mix_seed(*parts: int) -> int:
    """A 32-bit seed from several integers (stable across processes and runs)."""
    return int(np.random.SeedSequence([int(p) % 2**32 for p in parts]).generate_state(1)[0])


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffles every epoch from (seed, epoch) and yields ``(index, epoch)`` pairs.

    Under DDP (`world` processes) rank `rank` takes every `world`-th item of the same epoch
    order, from a tail cut to a multiple of `world` (equal batch counts: no rank waits): at
    per-process batch B/world the ranks together see exactly the single-process batches of
    B. Lightning's own distributed wrapper would reshuffle (`use_distributed_sampler: false`).
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0
        self.rank, self.world = 0, 1

    def shard(self, rank: int, world: int) -> None:
        """Take this process's interleaved share (rank of world)."""
        self.rank, self.world = int(rank), int(world)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at every epoch start (and by DDP's sampler wrapper)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = (
            np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
            if self.shuffle
            else np.arange(self.n)
        )
        epoch = self.epoch
        if self.world > 1:
            order = order[: len(order) - len(order) % self.world][self.rank :: self.world]
        return iter([(int(i), epoch) for i in order])

    def __len__(self) -> int:
        return self.n // self.world if self.world > 1 else self.n


class ShardSampler(Sampler[int]):
    """Indices rank, rank + world, … of a scoring set: every image on exactly one process,
    none padded or repeated (DistributedSampler pads to equal lengths, which would count
    duplicates in a synced confusion matrix)."""

    def __init__(self, n: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.rank, self.world = n, rank, world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


class FaceDataset(Dataset):
    """Faces of one subset; items are dicts with image, label, ROI mask and source row."""

    def __init__(
        self,
        faces: FaceArrays,
        rows: np.ndarray,
        labels: np.ndarray,
        transform: A.Compose,
        channels: int,
        seed: int,
        train: bool,
        roi_only: Sequence[int] | None = None,
    ) -> None:
        self.faces, self.rows, self.labels = faces, rows, labels
        self.transform, self.channels, self.seed, self.train = transform, channels, seed, train
        self.roi_only = list(roi_only) if roi_only else None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        i, epoch = item if isinstance(item, tuple) else (item, 0)
        row = int(self.rows[i])
        image = np.asarray(self.faces.images[row])
        masks = np.asarray(self.faces.masks[row])
        if self.roi_only:
            # preprocess.combine=mask: zero outside the ROI union; geometry unchanged, so CAMs
            # and masks keep sharing coordinates.
            image = image * masks[self.roi_only].any(axis=0)[..., None].astype(np.uint8)
        if self.channels == 1:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]
        if self.train:
            # albumentations keeps its own generator: seed it per sample (STYLE.md §7).
            self.transform.set_random_seed(mix_seed(self.seed, epoch, row))
        out = self.transform(image=image, mask=masks.transpose(1, 2, 0))
        return {
            "image": out["image"],
            "label": int(self.labels[i]),
            "mask": out["mask"].to(torch.uint8),
            "index": row,
        }


def build_transform(
    size: int, mean: Sequence[float], std: Sequence[float], augment: Sequence[Any] = ()
) -> A.Compose:
    """Augmentations (train only), resize to the model's input, normalise, to tensor.

    Masks go through the same geometric transforms (nearest neighbour), so they stay aligned.
    """
    return A.Compose(
        [
            *augment,
            A.Resize(
                size, size, interpolation=cv2.INTER_AREA, mask_interpolation=cv2.INTER_NEAREST
            ),
            A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0),
            ToTensorV2(transpose_mask=True),
        ]
    )


@dataclass
class DatasetPart:
    """One dataset of an experiment: its faces, labels (experiment indices) and split rows."""

    name: str
    faces: FaceArrays
    labels: np.ndarray
    split: splits.Split
    rows: dict[str, np.ndarray]  # train (after target_fraction) / val / test -> face rows
    classes: tuple[str, ...]  # the experiment's classes this dataset has
    fraction_subjects: list[str] | None = None
    deduped: int | None = None  # training images `data.dedupe` removed (None: dedupe off)


class _Concat(Dataset):
    """Datasets one after another; items may be ``(index, epoch)`` pairs (fusion)."""

    def __init__(self, parts: Sequence[FaceDataset]) -> None:
        self.parts = list(parts)
        self.offsets = np.cumsum([0, *(len(p) for p in self.parts)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        i, epoch = item if isinstance(item, tuple) else (item, None)
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        j = i - int(self.offsets[k])
        return self.parts[k][(j, epoch) if epoch is not None else j]


def _no_usable_face(name: str, faces: FaceArrays) -> DataError:
    """Nothing to train or score on: say how many files were lost and why (first of each)."""
    parts = []
    if len(faces.skipped):
        first = faces.skipped.iloc[0]
        parts.append(
            f"{len(faces.skipped)} file(s) skipped, e.g. {first['path']}: {first['reason']}"
        )
    excluded = faces.frame.loc[faces.frame["excluded"] != "", "excluded"]
    if len(excluded):
        parts.append(f"{len(excluded)} face(s) excluded, e.g. {excluded.iloc[0]}")
    why = f" ({'; '.join(parts)})" if parts else ""
    return DataError(f"dataset {name}: no usable face after preprocessing{why}")


class FERDataModule(L.LightningDataModule):
    """The experiment's datasets, class list, splits and the model's input format.

    `data` is the source (the only dataset in study A); `target` (study B, ``data@target``)
    adds a second one. Training uses the source alone without a target; with one, the target's
    training subset (`split.target_fraction`), or both merged when ``train_on=both`` (FU).
    Validation is the trained-on dataset's own (the target's when adapting).
    """

    def __init__(
        self,
        data: dict,
        split: dict,
        classes: Sequence[str],
        input: dict,
        cache_dir: str,
        preprocess: dict | None = None,
        target: dict | None = None,
        train_on: str = "auto",
        seed: int = 0,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        num_workers: int = 0,
        augment: Sequence[Any] = (),
        pin_memory: bool = False,
        persistent_workers: bool = False,
        on_device: bool = False,
        on_device_max_gb: float = 8.0,
    ) -> None:
        super().__init__()
        self.data_cfgs = {"source": data, **({"target": target} if target else {})}
        self.split_cfg = split
        self.classes = check_classes(classes)
        self.input = input
        self.cache_dir, self.seed = cache_dir, seed
        self.preprocess_cfg = dict(preprocess or {"method": "none"})
        if train_on not in ("auto", "source", "target", "both"):
            raise ConfigError(f"strategy.train_on={train_on!r}: allowed auto|source|target|both")
        if train_on in ("target", "both") and not target:
            raise ConfigError(f"strategy.train_on={train_on} needs a target dataset (data@target)")
        self.train_on = ("target" if target else "source") if train_on == "auto" else train_on
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.augment = num_workers, list(augment or [])
        self.pin_memory, self.persistent_workers = pin_memory, persistent_workers
        # on_device: training batches built on the model's device (fer/data/on_device.py);
        # setup refuses an augmentation it cannot reproduce (a ConfigError raised here would
        # reach the user wrapped in Hydra's InstantiationException, with a traceback)
        self.on_device, self.on_device_max_gb = bool(on_device), float(on_device_max_gb)
        self.device_data: DeviceTrainData | None = None
        self._epoch = 0
        self.parts: dict[str, DatasetPart] = {}

    @property
    def faces(self) -> FaceArrays | None:
        """The source dataset's faces (None before setup)."""
        return self.parts["source"].faces if self.parts else None

    # -- data ---------------------------------------------------------------------------------
    def _faces(self, cfg: dict) -> tuple[str, FaceArrays, np.ndarray]:
        """Scan and preprocess one dataset: its name, faces and experiment label indices."""
        name = str(cfg.get("name"))
        manifest = cfg["source"]()
        if len(manifest.select_classes(self.classes)) == 0:
            raise DataError(f"dataset {name}: no images of the classes {list(self.classes)}")
        pre = self.preprocess_cfg
        # The whole dataset is cached (as prepare.py caches it), then the experiment's classes
        # are picked: one cache serves every class list.
        faces = load_faces(
            manifest,
            settings_from(pre, cfg, int(self.input["size"])),
            Path(self.cache_dir) / "preprocess",
            workers=int(pre.get("workers", 1)),
            progress=bool(pre.get("progress", True)),
        ).of_classes(self.classes)
        return name, faces, self._labels(faces.frame)

    def _labels(self, frame: Any) -> np.ndarray:
        """Experiment class indices of a face frame's `label` column."""
        index = {c: i for i, c in enumerate(self.classes)}
        return frame["label"].map(index).to_numpy(np.int64)

    def whole(self, cfg: dict) -> FaceDataset:
        """Every usable face of a dataset outside the experiment's split (scored whole, as
        study A's FACES and JAFFE), in the evaluation transform."""
        name, faces, labels = self._faces(cfg)
        rows = faces.usable
        if len(rows) == 0:
            raise _no_usable_face(name, faces)
        return self.eval_set(faces, rows, labels[rows])

    def eval_set(self, faces: FaceArrays, rows: np.ndarray, labels: np.ndarray) -> FaceDataset:
        """Faces to score (never trained on): the evaluation transform and the run's own ROI
        masking, as the faces it was trained on."""
        size = int(self.input["size"])
        tf = build_transform(size, self.input["mean"], self.input["std"])
        channels = int(self.input["channels"])
        return FaceDataset(
            faces, rows, labels, tf, channels, self.seed, train=False, roi_only=self.roi_only
        )

    @property
    def roi_only(self) -> list[int] | None:
        """ROI channels kept by `preprocess.combine=mask` (None: whole image)."""
        pre = self.preprocess_cfg
        combine = pre.get("combine", "none")
        if combine == "mask":
            return [REGIONS.index(r) for r in (pre.get("regions") or list(REGIONS))]
        if combine != "none":
            raise ConfigError(f"preprocess.combine={combine!r}: allowed none | mask")
        return None

    def excluded_faces(
        self, dataset: FaceDataset, subjects: set[str] | None = None
    ) -> FaceDataset | None:
        """The faces `dataset`'s subset left out because their regions were not segmented
        (fallback crops, DESIGN.md "Excluded faces"): of `subjects` when given (a split's
        subset), else every one (a dataset scored whole). None when there are none, or when
        `preprocess.combine=mask` (no ROI to keep: the image would be blank)."""
        frame = dataset.faces.frame
        chosen = frame["excluded"].to_numpy() != ""
        if subjects is not None:
            chosen &= frame["subject"].isin(sorted(subjects)).to_numpy()
        rows = np.flatnonzero(chosen)
        if len(rows) == 0 or self.roi_only:
            return None
        return self.eval_set(dataset.faces, rows, self._labels(frame)[rows])

    def held_out(self, cfg: dict) -> FaceDataset:
        """A dataset outside the run's split, on the test subset the run's holdout split
        (same seed and protocol) gives it: study B scores every dataset on its test subset."""
        part = self._load("extra", cfg)
        rows = part.rows["test"]
        if len(rows) == 0:
            raise DataError(f"dataset {part.name}: its holdout split has no test subjects")
        return self.eval_set(part.faces, rows, part.labels[rows])

    def _load(self, role: str, cfg: dict | None = None) -> DatasetPart:
        cfg = self.data_cfgs[role] if cfg is None else cfg
        name, faces, labels = self._faces(cfg)
        frame = faces.frame
        # Training and scoring use the faces whose regions were segmented (study A's
        # protocol); excluded faces keep a fallback crop for evaluation on every face.
        usable = faces.usable
        if len(usable) == 0:
            raise _no_usable_face(name, faces)
        sub = frame.iloc[usable]
        kind = self.split_cfg.get("name", "kfold")
        group_by = self.split_cfg.get("group_by", "subject")
        if kind == "kfold":
            split = splits.kfold(
                sub["label"].to_numpy(),
                sub["subject"].to_numpy(),
                k=int(self.split_cfg["k"]),
                fold=int(self.split_cfg["fold"]),
                seed=int(self.split_cfg["seed"]),
                group_by=group_by,
                sequences=sub["sequence"].to_numpy(),
            )
        elif kind == "holdout":
            official = (
                sub["official_split"].to_numpy()
                if cfg.get("official_split") and "official_split" in sub
                else None
            )
            split = splits.holdout(
                sub["label"].to_numpy(),
                sub["subject"].to_numpy(),
                cfg.get("split_shares") or {},
                int(self.split_cfg["seed"]),
                name,
                group_by=group_by,
                sequences=sub["sequence"].to_numpy(),
                official=official,
            )
        else:
            raise ConfigError(f"split.name={kind!r}: allowed kfold | holdout")
        rows = {"train": usable[split.train], "val": usable[split.val], "test": usable[split.test]}
        chosen = None
        if role == "target":
            fraction = float(self.split_cfg.get("target_fraction", 1.0))
            picked, chosen = splits.target_fraction(
                split.train, sub["subject"].to_numpy(), fraction, int(self.split_cfg["seed"])
            )
            rows["train"] = usable[np.sort(picked)]
        present = set(frame["label"])
        return DatasetPart(
            name, faces, labels, split, rows, tuple(c for c in self.classes if c in present), chosen
        )

    def setup(self, stage: str | None = None) -> None:
        if self.parts:
            return
        self.parts = {role: self._load(role) for role in self.data_cfgs}
        names = [p.name for p in self.parts.values()]
        if len(set(names)) != len(names):
            raise ConfigError(f"source and target are the same dataset ({names[0]})")
        self._dedupe()
        channels, size = int(self.input["channels"]), int(self.input["size"])
        mean, std = self.input["mean"], self.input["std"]
        roi_only = self.roi_only
        train_tf = build_transform(size, mean, std, self.augment)
        eval_tf = build_transform(size, mean, std)

        def subset(part: DatasetPart, which: str, train: bool) -> FaceDataset:
            rows = part.rows[which]
            return FaceDataset(
                part.faces,
                rows,
                part.labels[rows],
                train_tf if train else eval_tf,
                channels,
                self.seed,
                train=train,
                roi_only=roi_only,
            )

        roles = ["source", "target"] if self.train_on == "both" else [self.train_on]
        trained = [subset(self.parts[r], "train", True) for r in roles]
        self.train_set = trained[0] if len(trained) == 1 else _Concat(trained)
        val_role = "source" if self.train_on == "source" else "target"
        self.val_set = subset(self.parts[val_role], "val", False)
        # What each dataset is scored on at the end (DESIGN.md "What evaluation scores"):
        # holdout -> its test subset; k-fold -> the run's validation fold.
        which = "test" if self.split_cfg.get("name", "kfold") == "holdout" else "val"
        self.score_sets = {p.name: subset(p, which, False) for p in self.parts.values()}
        self.score_subset = which
        self.train_sampler = EpochSampler(len(self.train_set), self.seed)
        self.train_sampler.set_epoch(self._epoch)
        if self.on_device:
            self.device_data = DeviceTrainData(
                trained, self.augment, self.input, self.seed, self.on_device_max_gb
            )

    def _dedupe(self) -> None:
        """`dedupe: true` in a trained dataset's config: drop its training images that
        duplicate a val/test image of any dataset here (fer/data/audit.py)."""
        trained = ["source", "target"] if self.train_on == "both" else [self.train_on]
        roles = [r for r in trained if self.data_cfgs[r].get("dedupe", False)]
        if roles:
            from fer.data.audit import dedupe_training  # scipy etc. only when asked for

            dedupe_training(self.parts, roles)

    def describe(self) -> dict[str, Any]:
        """Per dataset: sizes, class counts and subjects of each subset (for metrics.json)."""
        out: dict[str, Any] = {
            "train_on": self.train_on,
            "scored_on": self.score_subset,
            "regions": list(REGIONS),
        }
        for role, part in self.parts.items():
            frame, info = part.faces.frame, {"name": part.name}
            for which, idx in part.rows.items():
                sub = frame.iloc[idx]
                info[which] = {
                    "size": len(idx),
                    "class_counts": {c: int((sub["label"] == c).sum()) for c in self.classes},
                    "subjects": sorted(sub["subject"].unique().tolist()),
                }
            info["dataset_classes"] = list(part.classes)
            info["cache"] = part.faces.cache  # content hash of the files + settings
            info["excluded"] = int((frame["excluded"] != "").sum())
            info["skipped"] = part.faces.skipped.to_dict("records")
            info["group_by"], info["leaky"] = part.split.group_by, part.split.leaky
            if part.deduped is not None:
                info["dedupe_removed"] = part.deduped
            if part.fraction_subjects is not None:
                info["target_fraction"] = float(self.split_cfg.get("target_fraction", 1.0))
                info["fraction_subjects"] = part.fraction_subjects
            out[role] = info
        return out

    # -- loaders ------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, **kw: Any) -> DataLoader:
        workers = self.num_workers
        return DataLoader(
            dataset,
            num_workers=workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and workers > 0,
            **kw,
        )

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        self.train_sampler.shard(*self._rank_world())
        if self.device_data is not None:  # index batches; images built in on_after_batch_transfer
            return self.device_data.loader(self.train_sampler, self.batch_size)
        return self._loader(self.train_set, batch_size=self.batch_size, sampler=self.train_sampler)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # validation and scoring batches arrive with their images (CPU path)
        if self.device_data is not None and "image" not in batch:
            return self.device_data.build(batch)
        return batch

    def teardown(self, stage: str) -> None:
        if self.device_data is not None:
            self.device_data.release()

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        if world == 1:
            return self.eval_loader(self.val_set)
        sampler = ShardSampler(len(self.val_set), rank, world)
        return self._loader(self.val_set, batch_size=self.eval_batch_size, sampler=sampler)

    def eval_loader(self, dataset: Dataset) -> DataLoader:
        """A sequential loader over a scoring subset."""
        return self._loader(dataset, batch_size=self.eval_batch_size, shuffle=False)

    # -- resume -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # Store the epoch the *resumed* run starts with: Lightning builds the train iterator
        # (whose workers prefetch from the sampler) before it calls `set_epoch` on resume.
        # Checkpoints are taken at epoch end, so that is the epoch after the current one.
        trainer = self.trainer
        if trainer is not None and trainer.training:
            return {"epoch": trainer.fit_loop.epoch_progress.current.completed + 1}
        return {"epoch": self.train_sampler.epoch if self.parts else self._epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._epoch = int(state.get("epoch", 0))
        if self.parts:
            self.train_sampler.set_epoch(self._epoch)

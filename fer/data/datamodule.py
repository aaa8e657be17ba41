"""FERDataModule: cached faces -> split -> albumentations -> DataLoaders.

Resume determinism (../shared/STYLE.md §7): the train sampler carries the epoch itself and
yields ``(index, epoch)`` pairs, so each sample seeds its augmentation from (seed, epoch,
index) in whichever worker loads it; the data module's ``state_dict`` restores the epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
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
from fer.data.manifest import Manifest
from fer.data.preprocess import FaceArrays, load_faces, settings_from
from fer.errors import ConfigError, DataError
from fer.labels import REGIONS, check_classes


def mix_seed(*parts: int) -> int:
    """A 32-bit seed from several integers (stable across processes and runs)."""
    return int(np.random.SeedSequence([int(p) % 2**32 for p in parts]).generate_state(1)[0])


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffles every epoch from (seed, epoch) and yields ``(index, epoch)`` pairs."""

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

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
        return iter([(int(i), epoch) for i in order])

    def __len__(self) -> int:
        return self.n


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


class FERDataModule(L.LightningDataModule):
    """One dataset, its experiment classes, a k-fold split, and the model's input format."""

    def __init__(
        self,
        data: dict,
        split: dict,
        classes: Sequence[str],
        input: dict,
        cache_dir: str,
        preprocess: dict | None = None,
        seed: int = 0,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        num_workers: int = 0,
        augment: Sequence[Any] = (),
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ) -> None:
        super().__init__()
        self.data_cfg, self.split_cfg = data, split
        self.classes = check_classes(classes)
        self.input = input
        self.cache_dir, self.seed = cache_dir, seed
        self.preprocess_cfg = dict(preprocess or {"method": "none"})
        if isinstance(data.get("preprocess"), str):  # a dataset of ready crops (synthetic)
            self.preprocess_cfg["method"] = data["preprocess"]
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.augment = num_workers, list(augment or [])
        self.pin_memory, self.persistent_workers = pin_memory, persistent_workers
        self._epoch = 0
        self.faces: FaceArrays | None = None

    # -- data ---------------------------------------------------------------------------------
    def scan(self) -> Manifest:
        """Run the dataset's parser (the `source` partial of its data config)."""
        source: Callable[..., Manifest] = self.data_cfg["source"]
        return source()

    def setup(self, stage: str | None = None) -> None:
        if self.faces is not None:
            return
        manifest = self.scan().select_classes(self.classes)
        if len(manifest) == 0:
            raise DataError(f"dataset {self.data_cfg.get('name')}: no images of {self.classes}")
        size = int(self.data_cfg.get("cache_size", self.input["size"]))
        pre = self.preprocess_cfg
        self.faces = load_faces(
            manifest,
            settings_from(pre, size),
            Path(self.cache_dir) / "preprocess",
            workers=int(pre.get("workers", 1)),
            progress=bool(pre.get("progress", True)),
        )
        frame = self.faces.frame
        self.dataset_classes = tuple(c for c in self.classes if c in set(frame["label"]))
        index = {c: i for i, c in enumerate(self.classes)}
        self.labels = frame["label"].map(index).to_numpy(np.int64)
        # Training and validation use the faces whose regions were segmented (study A's
        # protocol); excluded faces keep a fallback crop for evaluation on every face.
        usable = self.faces.usable
        if len(usable) == 0:
            name = self.data_cfg.get("name")
            raise DataError(f"dataset {name}: no usable face after preprocessing")
        if self.split_cfg.get("name", "kfold") != "kfold":
            raise ConfigError(f"split={self.split_cfg.get('name')} is not implemented yet")
        sub = frame.iloc[usable]
        self.split = splits.kfold(
            sub["label"].to_numpy(),
            sub["subject"].to_numpy(),
            k=int(self.split_cfg["k"]),
            fold=int(self.split_cfg["fold"]),
            seed=int(self.split_cfg["seed"]),
            group_by=self.split_cfg.get("group_by", "subject"),
            sequences=sub["sequence"].to_numpy(),
        )
        self.rows = {"train": usable[self.split.train], "val": usable[self.split.val]}
        channels, size = int(self.input["channels"]), int(self.input["size"])
        mean, std = self.input["mean"], self.input["std"]
        roi_only = None
        if pre.get("combine", "none") == "mask":
            regions = pre.get("regions") or list(REGIONS)
            roi_only = [REGIONS.index(r) for r in regions]
        elif pre.get("combine", "none") != "none":
            raise ConfigError(f"preprocess.combine={pre['combine']!r}: allowed none | mask")
        train_tf = build_transform(size, mean, std, self.augment)
        eval_tf = build_transform(size, mean, std)
        self.train_set = FaceDataset(
            self.faces,
            self.rows["train"],
            self.labels[self.rows["train"]],
            train_tf,
            channels,
            self.seed,
            train=True,
            roi_only=roi_only,
        )
        self.val_set = FaceDataset(
            self.faces,
            self.rows["val"],
            self.labels[self.rows["val"]],
            eval_tf,
            channels,
            self.seed,
            train=False,
            roi_only=roi_only,
        )
        self.train_sampler = EpochSampler(len(self.train_set), self.seed)
        self.train_sampler.set_epoch(self._epoch)

    def describe(self) -> dict[str, Any]:
        """Sizes, class counts and subjects of each subset (recorded in metrics.json)."""
        assert self.faces is not None
        frame, out = self.faces.frame, {}
        for name, idx in self.rows.items():
            sub = frame.iloc[idx]
            out[name] = {
                "size": len(idx),
                "class_counts": {c: int((sub["label"] == c).sum()) for c in self.classes},
                "subjects": sorted(sub["subject"].unique().tolist()),
            }
        out["dataset_classes"] = list(self.dataset_classes)
        out["excluded"] = int((frame["excluded"] != "").sum())
        out["skipped"] = self.faces.skipped.to_dict("records")
        out["group_by"], out["leaky"] = self.split.group_by, self.split.leaky
        out["regions"] = list(REGIONS)
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

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, batch_size=self.batch_size, sampler=self.train_sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, batch_size=self.eval_batch_size, shuffle=False)

    # -- resume -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # Store the epoch the *resumed* run starts with: Lightning builds the train iterator
        # (whose workers prefetch from the sampler) before it calls `set_epoch` on resume.
        # Checkpoints are taken at epoch end, so that is the epoch after the current one.
        trainer = self.trainer
        if trainer is not None and trainer.training:
            return {"epoch": trainer.fit_loop.epoch_progress.current.completed + 1}
        return {"epoch": self.train_sampler.epoch if self.faces is not None else self._epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._epoch = int(state.get("epoch", 0))
        if self.faces is not None:
            self.train_sampler.set_epoch(self._epoch)

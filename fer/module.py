"""FERClassifier: the LightningModule every experiment trains."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from fer.data.datamodule import mix_seed
from fer.scoring import summarize
from fer.strategies import frozen_norm_layers


class FERClassifier(L.LightningModule):
    """Cross-entropy classifier over an experiment's class list.

    `optimizer` and `scheduler` are config partials (``_partial_: true``), finished in
    `configure_optimizers` with the parameters that train. Hyper-parameters are stored as
    plain containers, so checkpoints load with ``torch.load(weights_only=True)``.
    """

    def __init__(
        self,
        net: nn.Module,
        classes: Sequence[str],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        seed: int = 0,
        config: dict | None = None,
    ) -> None:
        super().__init__()
        # in the checkpoint as given; loggers get a path-free copy (train.py, portable_config)
        self.save_hyperparameters(
            {"classes": list(classes), "seed": int(seed), "config": config or {}}, logger=False
        )
        self.net = net
        self.classes = list(classes)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        n = len(self.classes)
        self.train_acc = MulticlassAccuracy(num_classes=n, average="micro")
        self.val_confusion = MulticlassConfusionMatrix(num_classes=n)
        self.last_val: dict[str, Any] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def train(self, mode: bool = True) -> FERClassifier:
        """Frozen BatchNorm layers stay in eval mode (their running statistics are frozen)."""
        super().train(mode)
        if mode:
            for m in frozen_norm_layers(self.net):
                m.eval()
        return self

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Dropout draws from torch's global RNG: seed it per batch from (seed, epoch, batch) so a
        # resumed run continues exactly as an uninterrupted one (STYLE.md §7).
        torch.manual_seed(mix_seed(self.hparams.seed, self.current_epoch, batch_idx))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        self.train_acc(logits.argmax(1), batch["label"])
        bs = len(batch["label"])
        # sync_dist: epoch values averaged over DDP processes (no-op on one)
        self.log(
            "train/loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            batch_size=bs,
            sync_dist=True,
        )
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=bs)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        self.val_confusion.update(logits.argmax(1), batch["label"])
        self.log(
            "val/loss",
            loss,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(batch["label"]),
            sync_dist=True,
        )

    def on_validation_epoch_end(self) -> None:
        # torchmetrics sums the confusion matrices of all DDP processes in compute(); each
        # image was scored by exactly one process (ShardSampler), so the counts are exact
        summary = summarize(self.val_confusion.compute().cpu().numpy(), self.classes)
        self.val_confusion.reset()
        self.last_val = summary
        # the same value on every process (from the synced matrix): sync_dist only says so
        self.log("val/acc", summary["acc"], prog_bar=True, sync_dist=True)
        self.log("val/acc_macro", summary["acc_macro"], sync_dist=True)
        for c, acc in summary["per_class"].items():
            if acc is not None:
                self.log(f"val/acc_{c}", acc, sync_dist=True)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}


@torch.inference_mode()
def predict_logits(net: nn.Module, loader: Any) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, C) and labels (N,) of `net` over a loader of face batches (eval mode)."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    logits, labels = [], []
    for batch in loader:
        logits.append(net(batch["image"].to(device)).float().cpu().numpy())
        labels.append(batch["label"].numpy())
    net.train(was_training)
    return np.concatenate(logits), np.concatenate(labels)


def confusion(
    logits: np.ndarray, labels: np.ndarray, allowed: Sequence[int] | None = None
) -> np.ndarray:
    """Confusion matrix ``[true, pred]`` from logits.

    `allowed` restricts the prediction to those class indices (the classes a dataset has:
    the "shared classes" reading); None = argmax over every model output (the paper's).
    """
    n = logits.shape[1]
    if allowed is not None:
        logits = np.where(np.isin(np.arange(n), list(allowed)), logits, -np.inf)
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (labels, logits.argmax(1)), 1)
    return cm


def predict_confusion(net: nn.Module, loader: Any) -> np.ndarray:
    """Confusion matrix of `net` over a loader (argmax over every output)."""
    return confusion(*predict_logits(net, loader))


def score_datasets(
    net: nn.Module, loaders: dict[str, Any], classes: Sequence[str], subset: str
) -> dict[str, Any]:
    """`summarize` per dataset, each labelled with the subset it was scored on."""
    return {
        name: {"subset": subset, **summarize(predict_confusion(net, dl), classes)}
        for name, dl in loaders.items()
    }

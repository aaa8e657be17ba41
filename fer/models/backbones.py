"""Backbone architectures, one short builder each (the model zoo's only door is build.py)."""

from __future__ import annotations

import torch
from torch import nn


class SmallVGG(nn.Module):
    """Study B's simplified VGG (Tannugi et al. 2019), as a public replication builds it.

    Unpadded convs: conv2×2 64, conv2×2 64, maxpool 2; conv3×3 128 ×3, maxpool 2; FC 2048,
    FC 1024 (50 % dropout after each), FC n. At 48×48 grey input the last conv map is 17×17,
    flattened 8·8·128 = 8192 after the pool: 19,270,407 parameters at 7 classes.
    ReLUs are not in-place, so Grad-CAM sees the same activations on CPU and GPU.
    """

    def __init__(
        self, num_classes: int, in_channels: int = 1, input_size: int = 48, dropout: float = 0.5
    ) -> None:
        super().__init__()

        def conv(cin: int, cout: int, k: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, k), nn.ReLU()]

        self.features = nn.Sequential(
            *conv(in_channels, 64, 2),
            *conv(64, 64, 2),
            nn.MaxPool2d(2),
            *conv(64, 128, 3),
            *conv(128, 128, 3),
            *conv(128, 128, 3),
            nn.MaxPool2d(2),
        )
        with torch.no_grad():
            n_flat = self.features(torch.zeros(1, in_channels, input_size, input_size)).numel()
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(n_flat, 2048),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(2048, 1024),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(1024, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def small_vgg(
    num_classes: int, in_channels: int = 1, input_size: int = 48, dropout: float = 0.5
) -> nn.Module:
    """Study B's network at its default 48×48 grey input."""
    return SmallVGG(num_classes, in_channels, input_size, dropout)


def vgg16(num_classes: int, in_channels: int = 3, dropout: float = 0.5) -> nn.Module:
    """torchvision's VGG16 (no batch norm) with an `num_classes` head; weights set by init.

    ReLUs are made non-in-place (Grad-CAM trap, STYLE.md §7); `in_channels` != 3 swaps the
    first conv.
    """
    from torchvision.models import vgg16 as tv_vgg16

    net = tv_vgg16(weights=None, num_classes=num_classes, dropout=dropout)
    for module in net.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    if in_channels != 3:
        net.features[0] = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1)
    return net


BACKBONES = {"small_vgg": small_vgg, "vgg16": vgg16}

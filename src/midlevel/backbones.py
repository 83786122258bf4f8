"""Spectrogram -> embedding networks. Both end in global average pooling, so any length works."""

from __future__ import annotations

from torch import nn


def conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class VGGBackbone(nn.Sequential):
    """The 2019 paper's VGG-style CNN (as re-implemented in CPJKU/robustness_mer_bottleneck).

    conv5x5/2 64, conv3x3 64, maxpool+dropout, conv3x3 128 x2, maxpool+dropout,
    conv3x3 256, 256, 384, 512, a 1x1 conv to 256, BN, ReLU, global average pool -> 256.
    """

    def __init__(self, *, dropout: float = 0.3) -> None:
        super().__init__(
            conv_bn_relu(1, 64, 5, stride=2),
            conv_bn_relu(64, 64, 3),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            conv_bn_relu(64, 128, 3),
            conv_bn_relu(128, 128, 3),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            conv_bn_relu(128, 256, 3),
            conv_bn_relu(256, 256, 3),
            conv_bn_relu(256, 384, 3),
            conv_bn_relu(384, 512, 3),
            conv_bn_relu(512, 256, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_features = 256


class CompactBackbone(nn.Sequential):
    """A small CNN of the same shape (about 1/25 of the VGG's compute) that trains on a 2-core CPU."""

    def __init__(self, *, width: int = 16, dropout: float = 0.1) -> None:
        w = width
        super().__init__(
            conv_bn_relu(1, w, 5, stride=2),
            conv_bn_relu(w, 2 * w, 3),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            conv_bn_relu(2 * w, 4 * w, 3),
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            conv_bn_relu(4 * w, 8 * w, 3),
            conv_bn_relu(8 * w, 8 * w, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_features = 8 * w


BACKBONES = {"vgg": VGGBackbone, "compact": CompactBackbone}


def build_backbone(name: str) -> nn.Module:
    try:
        return BACKBONES[name]()
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}") from None

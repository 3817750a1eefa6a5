"""DS-CNN keyword model for input [1, 1, n_mels, n_frames] (NCHW, mel-major), and its BN-folded export form.

Layout: conv 10x4 stride 2 (pad 4,1) + BN + ReLU; 4 x (depthwise 3x3 pad 1 + BN + ReLU + pointwise 1x1 +
BN + ReLU); global average pool; flatten; linear -> n_classes. `deploy_model` folds every BN into the
preceding conv and appends the float Softmax, which is what gets exported to ONNX.
"""
from __future__ import annotations

import torch
from torch import nn


class DSCNN(nn.Module):
    """Depthwise-separable CNN; `channels` sets every layer's width (64 -> about 24k parameters)."""

    def __init__(self, n_classes: int, channels: int = 64, blocks: int = 4):
        super().__init__()
        layers = [nn.Conv2d(1, channels, (10, 4), stride=2, padding=(4, 1), bias=False),
                  nn.BatchNorm2d(channels), nn.ReLU()]
        for _ in range(blocks):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(),
                       nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, n_classes)

    def forward(self, x):
        """float [B, 1, n_mels, n_frames] -> logits [B, n_classes]."""
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Conv (no bias) followed by eval-mode BN -> one Conv with bias (float64 folding, stored float32)."""
    w = conv.weight.detach().double()
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    bias = bn.bias.detach().double() - bn.running_mean.detach().double() * scale
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, groups=conv.groups, bias=True)
    with torch.no_grad():
        fused.weight.copy_((w * scale.reshape(-1, 1, 1, 1)).float())
        fused.bias.copy_(bias.float())
    return fused


class DeployDSCNN(nn.Module):
    """BN-folded DS-CNN ending in Softmax (probabilities), the exported graph."""

    def __init__(self, model: DSCNN):
        super().__init__()
        model = model.eval()
        mods = list(model.features)
        layers = []
        i = 0
        while i < len(mods):
            if isinstance(mods[i], nn.Conv2d) and isinstance(mods[i + 1], nn.BatchNorm2d):
                layers.append(_fold(mods[i], mods[i + 1]))
                i += 2
            else:
                layers.append(mods[i])
                i += 1
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = model.classifier
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        return self.softmax(self.classifier(torch.flatten(self.pool(self.features(x)), 1)))


def deploy_model(model: DSCNN) -> DeployDSCNN:
    """The eval-mode, BN-folded, Softmax-terminated copy of a trained model."""
    return DeployDSCNN(model).eval()


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

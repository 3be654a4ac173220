"""A small residual network: the second architecture of *Why Adam remembers*.

Frati et al.'s summary lists "one other architecture (e.g. a ResNet)" among its next checks, to
see whether the optimizer effects depend on the plain ConvNet. This one is an 8-layer
ResNet sized for 28x28 Omniglot and batch-1 training:

- a stem: Conv 3x3 (``channels``, padding 1) -> InstanceNorm(affine) -> ReLU -> MaxPool 2
  (28 -> 14);
- three basic residual blocks (two Conv 3x3 -> InstanceNorm, a shortcut that is the
  identity or Conv 1x1 -> InstanceNorm when the shape changes, ReLU after the sum) with
  ``channels``, ``2*channels`` and ``4*channels`` and strides 1, 2, 2 (14 -> 14 -> 7 -> 4);
- global average pooling and one linear ``head`` (``4*channels`` features).

It differs from :class:`~cldyn_lib.models.convnet.ConvNet` in the two ways that matter most for
how gradients reach the lower layers: skip connections, and a head that sees averaged
features (4 * channels of them) rather than a flattened map. InstanceNorm is kept because
batch statistics are meaningless at batch size 1; convolutions carry no bias (InstanceNorm
cancels it). It has the same interface as the ConvNet (``features``, ``head``,
``layer_names``, ``n_features``), so pre-training, zapping and transfer work unchanged.
Taught in *Why Adam remembers*.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_norm(c_in: int, c_out: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
        nn.InstanceNorm2d(c_out, affine=True),
    )


class BasicBlock(nn.Module):
    """``relu(norm(conv(relu(norm(conv(x))))) + shortcut(x))``."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.a = _conv_norm(c_in, c_out, 3, stride)
        self.b = _conv_norm(c_out, c_out, 3, 1)
        self.shortcut = (
            nn.Identity() if stride == 1 and c_in == c_out else _conv_norm(c_in, c_out, 1, stride)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.b(torch.relu(self.a(x))) + self.shortcut(x))


class ResNet(nn.Module):
    """Stem, three residual blocks, global average pooling, linear ``head``."""

    def __init__(
        self,
        channels: int = 32,
        n_outputs: int = 1000,
        *,
        in_channels: int = 1,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        c = channels
        self.channels = channels
        self.stem = nn.Sequential(*_conv_norm(in_channels, c), nn.ReLU(), nn.MaxPool2d(2))
        self.block1 = BasicBlock(c, c, 1)
        self.block2 = BasicBlock(c, 2 * c, 2)
        self.block3 = BasicBlock(2 * c, 4 * c, 2)
        self.n_features = 4 * c
        self.head = nn.Linear(self.n_features, n_outputs)
        self.reset_parameters(generator)

    @property
    def layer_names(self) -> tuple[str, ...]:
        return ("stem", "block1", "block2", "block3", "head")

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Kaiming-normal conv weights (fan-in, ReLU gain), norms at scale 1 / shift 0, and
        a per-row Kaiming head with zero bias, as in the ConvNet."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator))
                m.weight.mul_((2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.InstanceNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
        d = self.head.in_features
        self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=generator))
        self.head.weight.mul_((2.0 / d) ** 0.5)
        self.head.bias.zero_()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally averaged output of the last block, shape (batch, ``n_features``)."""
        x = self.block3(self.block2(self.block1(self.stem(x))))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

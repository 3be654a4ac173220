"""Frati et al.'s ConvNet: three conv blocks and one linear head (the part that gets zapped).

Each block is Conv 3x3 (no padding) -> InstanceNorm2d(affine=True) -> ReLU, with a 2x2 max
pool after blocks 1 and 2 only. A 28x28 greyscale image shrinks 28 -> 26 -> 13 -> 11 -> 5 -> 3,
so 256 channels give 256 * 3 * 3 = 2304 features, and the head is ``Linear(2304, 1000)``: the
reference keeps 1000 outputs although Omniglot's background set has 964 classes.

**No conv biases.** InstanceNorm subtracts each channel's mean over the image, so a bias
added by the conv before it cancels exactly: its true gradient is zero, and what autograd
returns is float round-off. Adam divides that noise by its own tiny running scale and turns
it into lr-sized steps, so the bias would drift at random and show up as fake "movement" in
the per-layer analyses of *How far a shock travels*. We build the convs with
``bias=False`` (the model computes the same function).

``channels`` is the knob that makes the model affordable on a CPU (256 in the paper, 8-64
in the book's ci and laptop presets). ``blocks``, ``padding``, ``in_channels`` and
``image_size`` allow a 4-block, padded, colour variant like the reference's Omni-image
model (its exact pooling schedule is not checked here); this book has no Omni-image data
and never trains it.

Taught in the chapter *Zapping and transfer shock*; the per-layer views (``LAYERS``,
:func:`layer_weights`) are used in *How far a shock travels*.
"""

from __future__ import annotations

import torch
from torch import nn

LAYERS = ("conv1", "conv2", "conv3", "head")
"""The layers the per-layer analyses look at, from the input up (3-block model)."""


def feature_size(image_size: int = 28, blocks: int = 3, padding: int = 0) -> int:
    """Side length of the last feature map: each block loses ``2 - 2*padding`` pixels, and
    every block but the last halves the map (floor)."""
    s = image_size
    for b in range(blocks):
        s = s - 2 + 2 * padding
        if b < blocks - 1:
            s //= 2
        if s < 1:
            raise ValueError(f"image_size={image_size} is too small for {blocks} blocks")
    return s


class ConvNet(nn.Module):
    """``blocks`` x (Conv3x3 -> InstanceNorm(affine) -> ReLU [-> MaxPool2]) -> Linear head.

    Attributes ``conv1``...``convN`` (each an ``nn.Sequential``) and ``head`` (``nn.Linear``).
    Conv weights start Kaiming-normal (fan-in, ReLU gain) as in the reference; the head starts
    with per-row Kaiming-normal weights and zero bias (:func:`cldyn_lib.zap`).
    """

    def __init__(
        self,
        channels: int = 256,
        n_outputs: int = 1000,
        *,
        in_channels: int = 1,
        image_size: int = 28,
        blocks: int = 3,
        padding: int = 0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.channels, self.blocks, self.image_size = channels, blocks, image_size
        side = feature_size(image_size, blocks, padding)
        c_in = in_channels
        for b in range(1, blocks + 1):
            layers = [
                nn.Conv2d(c_in, channels, 3, padding=padding, bias=False),
                nn.InstanceNorm2d(channels, affine=True),
                nn.ReLU(),
            ]
            if b < blocks:
                layers.append(nn.MaxPool2d(2))
            setattr(self, f"conv{b}", nn.Sequential(*layers))
            c_in = channels
        self.n_features = channels * side * side
        self.head = nn.Linear(self.n_features, n_outputs)
        self.reset_parameters(generator)

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(f"conv{b}" for b in range(1, self.blocks + 1)) + ("head",)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Kaiming-normal conv weights, InstanceNorm scale 1 / shift 0, per-row Kaiming head."""
        for b in range(1, self.blocks + 1):
            block = getattr(self, f"conv{b}")
            w = block[0].weight
            fan_in = w.shape[1] * w.shape[2] * w.shape[3]
            w.copy_(torch.randn(w.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
            block[1].weight.fill_(1.0)
            block[1].bias.zero_()
        d = self.head.in_features
        self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=generator))
        self.head.weight.mul_((2.0 / d) ** 0.5)
        self.head.bias.zero_()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened output of the conv blocks, shape (batch, ``n_features``)."""
        for b in range(1, self.blocks + 1):
            x = getattr(self, f"conv{b}")(x)
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def layer_weights(model: ConvNet) -> dict[str, torch.Tensor]:
    """The main weight tensor of each layer (conv kernels, head matrix), by layer name.

    The per-layer cosines of *How far a shock travels* compare these; the InstanceNorm
    scales and shifts and the head bias are left out (few numbers, on another scale).
    """
    out = {f"conv{b}": getattr(model, f"conv{b}")[0].weight for b in range(1, model.blocks + 1)}
    out["head"] = model.head.weight
    return out


def layer_of(param_name: str) -> str:
    """The layer a parameter belongs to: ``"conv2.1.weight"`` -> ``"conv2"``."""
    return param_name.split(".", 1)[0]

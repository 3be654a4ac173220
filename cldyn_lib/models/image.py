"""Image models of Yang et al.'s vision experiments: a ViT, a small VGG-style CNN, ImageGPT.

:func:`build_image_model` builds the model of a :class:`~cldyn_lib.VisionConfig` (random
init, seeded, or the hub checkpoints with ``weights="pretrained"``); :func:`hub_palette` is
ImageGPT's own colour palette. Taught in the chapter *Beyond language*.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import ConfigError

HUB = {"vit": "google/vit-base-patch32-224-in21k", "igpt": "openai/imagegpt-small"}


class SmallVGG(torch.nn.Module):
    """VGG-style: three stages of two 3x3 convolutions (c, 2c, 4c channels) and max pooling."""

    def __init__(self, width: int, size: int, n_classes: int = 10):
        super().__init__()
        layers, c_in = [], 3
        for c in (width, 2 * width, 4 * width):
            layers += [torch.nn.Conv2d(c_in, c, 3, padding=1), torch.nn.ReLU()]
            layers += [torch.nn.Conv2d(c, c, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
            c_in = c
        self.features = torch.nn.Sequential(*layers)
        flat = 4 * width * (size // 8) ** 2
        self.classifier = torch.nn.Sequential(
            torch.nn.Linear(flat, 4 * width), torch.nn.ReLU(), torch.nn.Linear(4 * width, n_classes)
        )

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def build_image_model(config, palette_size: int = 512) -> torch.nn.Module:
    """The model of ``config`` (random init seeded by ``config.seed``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(np.random.SeedSequence([config.seed, 12]).generate_state(1)[0]))
        if config.task == "igpt":
            from transformers import ImageGPTConfig, ImageGPTForCausalImageModeling

            drop = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # A.1: dropout off
            if config.weights == "pretrained":
                return ImageGPTForCausalImageModeling.from_pretrained(HUB["igpt"], **drop)
            cfg = ImageGPTConfig(
                vocab_size=palette_size + 1, n_positions=config.image_size**2,
                n_embd=config.width, n_layer=config.depth, n_head=config.heads, **drop,
            )  # fmt: skip
            return ImageGPTForCausalImageModeling(cfg)
        if config.arch == "vit":
            from transformers import ViTConfig, ViTForImageClassification

            if config.weights == "pretrained":
                return ViTForImageClassification.from_pretrained(HUB["vit"], num_labels=10)
            cfg = ViTConfig(
                image_size=config.image_size, patch_size=4, hidden_size=config.width,
                num_hidden_layers=config.depth, num_attention_heads=config.heads,
                intermediate_size=4 * config.width, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0, num_labels=10,
            )  # fmt: skip
            return ViTForImageClassification(cfg)
        if config.weights == "pretrained":
            try:
                import torchvision
            except ImportError as err:
                raise ConfigError("arch='cnn' with weights='pretrained' needs torchvision") from err
            model = torchvision.models.vgg19(weights="IMAGENET1K_V1")
            model.classifier[-1] = torch.nn.Linear(4096, 10)
            return model
        return SmallVGG(config.width, config.image_size)


def hub_palette() -> np.ndarray:
    """ImageGPT's 512 colour clusters (from the hub), as RGB in [0, 1]."""
    from transformers import ImageGPTImageProcessor

    clusters = np.asarray(ImageGPTImageProcessor.from_pretrained(HUB["igpt"]).clusters)
    return (clusters + 1) / 2  # the processor's colours live in [-1, 1]

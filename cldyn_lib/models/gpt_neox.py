"""GPT-NeoX language models for cyclic training (``transformers``' ``GPTNeoXForCausalLM``).

- :data:`PYTHIA`: the Pythia suite's shapes; :func:`pythia_arch` turns a name plus width, depth,
  heads and MLP-width knobs into an :class:`Arch`.
- :func:`build_random`: a randomly initialised model. ``init="pythia"`` is the GPT-NeoX
  recipe Pythia was trained from (Biderman et al. 2023): *small_init*, std
  ``sqrt(2/(5d))``, for the embedding, the fused query-key-value projection, the MLP input
  and the output head, and *wang_init*, std ``2/(L*sqrt(d))``, for the attention output and
  the MLP output; biases 0, layer norms 1 and 0. ``init_dims="reference"`` uses Yang et al.'s
  hard-coded d = 2048, L = 16 (Pythia-1B) whatever the model's shape, as its script does;
  ``"model"`` uses the model's own d and L. ``init="gaussian"`` draws every matrix from an
  isotropic N(0, 0.02^2) (Yang et al., appendix B.4). The output head is found with
  ``get_output_embeddings()``: it is ``embed_out`` in transformers 4 and ``lm_head`` in 5.
- :func:`load_pretrained`: Pythia weights with ``from_pretrained`` (a hub name, or a local
  folder written by ``save_pretrained``), in float32.
- :func:`document_losses`: the loss the cyclic engine (:func:`cldyn_lib.run_cyclic`) reads;
  restricting the vocabulary and freezing blocks work on any causal LM and live in
  :mod:`cldyn_lib.models.causal_lm`.

Taught in the chapters *Anticipatory recovery in a language model* and *Emergence with scale*.
"""

from __future__ import annotations

import dataclasses
import math
import os

import torch
import torch.nn.functional as F

from ..config import ConfigError, check_choice, check_int
from ..data.documents import FULL_VOCAB_SIZE

#: Pythia model -> (width d, depth L, attention heads); MLP width 4d, 2,048 positions.
PYTHIA = {
    "pythia-70m": (512, 6, 8),
    "pythia-160m": (768, 12, 12),
    "pythia-410m": (1024, 24, 16),
    "pythia-1b": (2048, 16, 8),
    "pythia-1.4b": (2048, 24, 16),
    "pythia-2.8b": (2560, 32, 32),
}
MODELS = tuple(PYTHIA)
CONTEXT = 2048  #: positions of every Pythia model
INITS = ("pythia", "gaussian", "step0")
INIT_DIMS = ("model", "reference")
REFERENCE_DIMS = (2048, 16)  #: d and L that Yang et al.'s init script hard-codes (Pythia-1B)


@dataclasses.dataclass(frozen=True)
class Arch:
    """The shape of a GPT-NeoX model."""

    width: int  #: d, the size of the token embedding
    depth: int  #: L, transformer blocks
    heads: int
    mlp_width: int
    vocab_size: int
    context: int = CONTEXT

    def n_params(self, embeddings: bool = True) -> int:
        """Parameters (weights and biases); ``embeddings=False`` leaves out input and head."""
        d, f = self.width, self.mlp_width
        block = (3 * d * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d) + 4 * d
        n = self.depth * block + 2 * d
        return n + (2 * self.vocab_size * d if embeddings else 0)

    def flops_per_token(self, seq: int) -> float:
        """Forward FLOPs per token (2 per multiply-add) of matmuls, attention included."""
        d, f, L, V = self.width, self.mlp_width, self.depth, self.vocab_size
        return 2.0 * (L * (4 * d * d + 2 * d * f + 2 * seq * d) + d * V)


def pythia_arch(
    model: str,
    width: int = 0,
    depth: int = 0,
    heads: int = 0,
    mlp_width: int = 0,
    vocab_size: int = FULL_VOCAB_SIZE,
) -> Arch:
    """The shape of Pythia ``model`` with any knob that is not 0 replaced.

    ``mlp_width=0`` means 4x the width. Heads must divide the width into heads of at least
    8 dimensions, a multiple of 8 (a quarter of each head carries the rotary position code).
    """
    check_choice("model", model, MODELS)
    d0, L0, h0 = PYTHIA[model]
    d = check_int("width", width, 0, 16384) or d0
    L = check_int("depth", depth, 0, 256) or L0
    h = check_int("heads", heads, 0, 1024) or h0
    if width and not heads:  # keep the model's head size where it divides the new width
        h = max(1, min(h0, d // (d0 // h0)))
    if d % h or (d // h) % 8:
        raise ConfigError(
            f"heads must divide width={d} into heads of a multiple of 8 dimensions; got {h}"
        )
    f = check_int("mlp_width", mlp_width, 0, 65536) or 4 * d
    return Arch(d, L, h, f, check_int("vocab_size", vocab_size, 2, 10**6))


def arch_of_folder(path: str) -> Arch:
    """The shape recorded in a ``save_pretrained`` folder's ``config.json``."""
    import json

    file = os.path.join(os.path.expanduser(path), "config.json")
    if not os.path.isfile(file):
        raise ConfigError(f"weights_path must be a folder with a config.json; got {path!r}")
    with open(file, encoding="utf-8") as f:
        c = json.load(f)
    return Arch(
        c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"],
        c["intermediate_size"], c["vocab_size"], c.get("max_position_embeddings", CONTEXT),
    )  # fmt: skip


def neox_config(a: Arch):
    """A ``GPTNeoXConfig`` like Pythia's (rotary on 25% of each head, parallel residual)."""
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=a.vocab_size,
        hidden_size=a.width,
        num_hidden_layers=a.depth,
        num_attention_heads=a.heads,
        intermediate_size=a.mlp_width,
        max_position_embeddings=a.context,
        hidden_act="gelu",
        use_parallel_residual=True,
        tie_word_embeddings=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        layer_norm_eps=1e-5,
        bos_token_id=0,
        eos_token_id=0,
        use_cache=False,
    )


def output_head(model) -> torch.nn.Module:
    """The output projection (``embed_out`` in transformers 4, ``lm_head`` in 5)."""
    return model.get_output_embeddings()


def init_weights_(
    model, scheme: str = "pythia", dims: tuple[int, int] | None = None, seed: int = 0
) -> None:
    """Re-draw every weight of ``model`` in place with a seeded CPU generator.

    ``scheme="pythia"``: small_init / wang_init with ``dims = (d, L)`` (default: the model's
    own); ``"gaussian"``: N(0, 0.02^2) for every matrix. Biases 0, layer norms (1, 0).
    """
    check_choice("init", scheme, ("pythia", "gaussian"))
    cfg = model.config
    d, L = dims or (cfg.hidden_size, cfg.num_hidden_layers)
    small, wang = math.sqrt(2 / (5 * d)), 2 / (L * math.sqrt(d))
    if scheme == "gaussian":
        small = wang = 0.02
    gen = torch.Generator().manual_seed(seed)

    def draw(param, std):
        with torch.no_grad():
            values = torch.randn(param.shape, generator=gen, dtype=torch.float32) * std
            param.copy_(values.to(param.device, param.dtype))

    out_names = ("attention.dense.weight", "mlp.dense_4h_to_h.weight")
    for name, p in model.gpt_neox.named_parameters():
        if "layernorm" in name or "layer_norm" in name:
            with torch.no_grad():
                p.fill_(1.0 if name.endswith("weight") else 0.0)
        elif name.endswith("bias"):
            with torch.no_grad():
                p.zero_()
        else:
            draw(p, wang if name.endswith(out_names) else small)
    draw(output_head(model).weight, small)


def build_random(a: Arch, init: str = "pythia", init_dims: str = "model", seed: int = 0):
    """A randomly initialised GPT-NeoX model of shape ``a`` (see the module docstring)."""
    from transformers import GPTNeoXForCausalLM

    check_choice("init_dims", init_dims, INIT_DIMS)
    with torch.random.fork_rng(devices=[]):  # transformers' own init must not move our RNGs
        torch.manual_seed(seed)
        model = GPTNeoXForCausalLM(neox_config(a))
    init_weights_(model, init, REFERENCE_DIMS if init_dims == "reference" else None, seed)
    return model


def hub_id(model: str) -> str:
    return f"EleutherAI/{model}"


def _offline() -> bool:
    flags = (os.environ.get(k, "").lower() for k in ("HF_HUB_OFFLINE", "CLDYN_OFFLINE"))
    return any(f in ("1", "true", "yes") for f in flags)


def weights_available(model: str, path: str = "", revision: str | None = None) -> bool:
    """Whether :func:`load_pretrained` can succeed without guessing: a local folder with a
    ``config.json``, a copy in the Hugging Face cache, or (when online) the hub."""
    if path:
        return os.path.isfile(os.path.join(os.path.expanduser(path), "config.json"))
    if not _offline():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(hub_id(model), "config.json", revision=revision)
    except Exception:  # a missing or old huggingface_hub: nothing cached that we can see
        return False
    return isinstance(hit, str)


def load_pretrained(model: str, path: str = "", revision: str | None = None):
    """Pythia ``model`` with ``from_pretrained`` (``path``: a local folder instead of the hub).

    ``revision="step0"`` gives Pythia's own initialisation checkpoint. Loaded in float32
    (transformers 5 would otherwise keep the checkpoint's float16).
    """
    import transformers
    from transformers import GPTNeoXForCausalLM

    major = int(transformers.__version__.split(".")[0])
    dtype_kw = {"dtype": torch.float32} if major >= 5 else {"torch_dtype": torch.float32}
    src = os.path.expanduser(path) if path else hub_id(model)
    kwargs = {"revision": revision} if revision and not path else {}
    return GPTNeoXForCausalLM.from_pretrained(src, **dtype_kw, **kwargs)


def document_losses(logits: torch.Tensor, ids: torch.Tensor, n_tokens: torch.Tensor):
    """Mean next-token cross-entropy (nats/token) of each row over its real tokens.

    ``logits`` (B, C, V) come from ``ids`` (B, C); row b has ``n_tokens[b]`` real tokens
    followed by padding, which is left out (label -100 in Yang et al.'s code).
    """
    logits = logits.float()  # a no-op in float32; bf16 logits are summed in float32
    B, C, V = logits.shape
    pos = torch.arange(C, device=ids.device)
    valid = pos[None, :] < (n_tokens[:, None] - 1)  # position j predicts token j+1
    targets = torch.full_like(ids, -100)
    targets[:, :-1] = ids[:, 1:]
    targets = targets.masked_fill(~valid, -100)
    # on the contiguous (B*C, V) logits, the last position ignored: no copy of the logits
    ce = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="none")
    return ce.view(B, C).sum(1) / valid.sum(1).clamp_min(1)

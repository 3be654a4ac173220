"""Any ``transformers`` causal language model, for cyclic training: checked, loaded, frozen.

``CyclicConfig(causal_lm=...)`` names a local folder written by ``save_pretrained`` or a hub
id; the model comes from ``AutoModelForCausalLM`` and its tokenizer from ``AutoTokenizer``,
never with ``trust_remote_code``. Everything that can be checked without loading the weights
is checked first, by :func:`inspect_causal_lm` and :func:`load_lm_tokenizer`, each failure
a :class:`~cldyn_lib.ConfigError` naming the parameter: a model whose code would have to be
downloaded and run (``auto_map``, an unknown ``model_type``), a model that is not a causal
LM, a folder without weights, a tokenizer with neither a padding nor an end-of-text token.

What the cyclic engine then does to the model works for every architecture family:

- :func:`transformer_blocks` finds the model's own list of blocks (:data:`BLOCK_PATHS`:
  ``model.layers`` for Llama, Qwen, Mistral, ..., ``transformer.h`` for GPT-2, Falcon, ...,
  ``gpt_neox.layers``, ``model.decoder.layers`` for OPT, ...), or refuses to guess;
- :func:`freeze_blocks_` freezes the embedding (input and learned positions) and the first
  B blocks (Yang et al., Fig. 5d); with tied input and output embeddings (GPT-2) the output
  layer is frozen with them;
- :func:`restrict_vocab_` keeps some rows of the embedding and of the output layer (found
  with ``get_output_embeddings()``), keeping them tied when they were;
- :func:`add_lora` wraps the model in LoRA adapters (the optional ``peft`` package).

Taught in the appendix *Your own model*.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError, check_int
from .gpt_neox import Arch

#: where each architecture family keeps its list of transformer blocks (tried in order)
BLOCK_PATHS = {
    "model.layers": "Llama, Qwen, Mistral, Mixtral, Gemma, Phi, OLMo, StableLM, Granite",
    "transformer.h": "GPT-2, GPT-J, GPT-Neo, CodeGen, Falcon, BLOOM, GPT-BigCode",
    "gpt_neox.layers": "GPT-NeoX, Pythia",
    "model.decoder.layers": "OPT",
    "transformer.blocks": "MPT",
    "backbone.layers": "Mamba",
}
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")  # fmt: skip
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
ENCODERS = ("bert", "roberta", "xlm-roberta", "camembert", "ernie", "electra", "bert-generation")


@dataclasses.dataclass(frozen=True)
class CausalLMInfo:
    """What a model's ``config.json`` says, read without loading the weights."""

    source: str  #: the folder or hub id
    model_type: str
    context: int | None  #: positions the model can attend to (None: no fixed limit)
    depth: int  #: transformer blocks
    width: int
    vocab_rows: int  #: rows of the input embedding
    tied: bool  #: input and output embeddings share one matrix
    has_weights: bool


def _read_config(source: str) -> tuple[dict, bool]:
    """(the raw config.json, whether weights are there) for a folder or a hub id."""
    path = Path(source).expanduser()
    if path.is_dir():
        file = path / "config.json"
        if not file.is_file():
            raise ConfigError(
                f"causal_lm must be a folder written by save_pretrained (with a config.json) "
                f"or a hub id; {source!r} has no config.json"
            )
        has = any((path / w).is_file() for w in WEIGHT_FILES)
        return json.loads(file.read_text(encoding="utf-8")), has
    if path.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise ConfigError(f"causal_lm {source!r} is not a folder (nor a hub id such as 'gpt2')")
    try:
        from transformers.utils import cached_file

        file = cached_file(source, "config.json")
    except Exception as err:  # offline, unknown id, no network: many error types
        raise ConfigError(
            f"causal_lm {source!r}: no such local folder, and its config.json could not be "
            f"fetched from the hub ({type(err).__name__}: {str(err).splitlines()[0][:160]})"
        ) from None
    return json.loads(Path(file).read_text(encoding="utf-8")), True


def inspect_causal_lm(source: str, need_weights: bool = True) -> CausalLMInfo:
    """Check that ``source`` is a causal LM transformers can build without remote code."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    raw, has_weights = _read_config(source)
    mtype = raw.get("model_type", "")
    if "auto_map" in raw:
        raise ConfigError(
            f"causal_lm {source!r} ships its own model code (auto_map in config.json), which "
            "would need trust_remote_code; cldyn never runs downloaded code: use a "
            "model whose architecture is built into transformers"
        )
    if mtype not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        import transformers

        raise ConfigError(
            f"causal_lm must be a causal language model; {source!r} has model_type "
            f"{mtype!r}, which transformers {transformers.__version__} has no causal-LM class "
            "for (a model that needs trust_remote_code is refused)"
        )
    archs = raw.get("architectures") or []
    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    if archs and not any(a in causal or a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        raise ConfigError(
            f"causal_lm must be a causal language model; {source!r} was saved as {archs} "
            "(not a causal-LM head)"
        )
    if mtype in ENCODERS and not raw.get("is_decoder"):
        raise ConfigError(
            f"causal_lm must be a causal language model; {source!r} is a {mtype} encoder "
            "(is_decoder is not set)"
        )
    if need_weights and not has_weights:
        raise ConfigError(
            f"causal_lm folder {source!r} has a config.json but no weights ({WEIGHT_FILES[0]} "
            "or pytorch_model.bin): save them with model.save_pretrained(folder), or use "
            "weights='random' to train its architecture from scratch"
        )
    cfg = AutoConfig.from_pretrained(os.path.expanduser(source), trust_remote_code=False)
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    context = next((int(getattr(text, k)) for k in CONTEXT_KEYS if getattr(text, k, None)), None)
    tied = bool(getattr(text, "tie_word_embeddings", getattr(cfg, "tie_word_embeddings", False)))
    return CausalLMInfo(
        source, mtype, context, int(text.num_hidden_layers), int(text.hidden_size),
        int(text.vocab_size), tied, has_weights,
    )  # fmt: skip


def _files_stamp(source: str) -> tuple:
    path = Path(source).expanduser()
    if not path.is_dir():
        return (source,)
    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(path.iterdir()))


@functools.lru_cache(maxsize=4)
def _tokenizer(source: str, stamp: tuple):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.path.expanduser(source), trust_remote_code=False)


def load_lm_tokenizer(source: str):
    """The model's own tokenizer (``AutoTokenizer``); its padding id is its pad token, else
    its end-of-text token. Neither is a ConfigError. Kept for the next run of the same
    folder (a large ``tokenizer.json`` takes a second to read); do not modify it."""
    folder = Path(source).expanduser()
    try:
        if folder.is_dir() and not any((folder / f).is_file() for f in TOKENIZER_FILES):
            raise FileNotFoundError(f"none of {', '.join(TOKENIZER_FILES)}")
        tok = _tokenizer(source, _files_stamp(source))
    except Exception as err:
        raise ConfigError(
            f"causal_lm {source!r} has no tokenizer that AutoTokenizer can load "
            f"({type(err).__name__}: {str(err).splitlines()[0][:120]}); save one beside the "
            "model with tokenizer.save_pretrained"
        ) from None
    if tok.pad_token_id is None and tok.eos_token_id is None:
        raise ConfigError(
            f"causal_lm {source!r}: the tokenizer has neither a pad token nor an end-of-text "
            "(eos) token to pad short documents with; set tokenizer.pad_token (or eos_token) "
            "and save it again"
        )
    return tok


def pad_id_of(tokenizer) -> int:
    """The id short documents are padded with: the pad token, else end-of-text."""
    return int(
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )


def load_causal_lm(source: str, weights: str = "pretrained", seed: int = 0):
    """The model in float32: ``weights="pretrained"`` loads its weights, ``"random"`` builds
    its architecture with its own initialisation, seeded (transformers' own init)."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    src = os.path.expanduser(source)
    if weights == "pretrained":
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # the run's own bar is the one to watch
        try:
            model = AutoModelForCausalLM.from_pretrained(
                src, dtype=torch.float32, trust_remote_code=False
            )
        finally:
            if bar:
                hf_logging.enable_progress_bar()
    else:
        cfg = AutoConfig.from_pretrained(src, trust_remote_code=False)
        with torch.random.fork_rng(devices=[]):  # the init must not move the caller's RNG
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.config.use_cache = False  # no key-value cache: every forward sees a whole window
    return model


def base_model(model):
    """The transformers model inside a LoRA wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def transformer_blocks(model) -> torch.nn.ModuleList:
    """The model's own list of transformer blocks (see :data:`BLOCK_PATHS`)."""
    m = base_model(model)
    for path in BLOCK_PATHS:
        obj = m
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
        if isinstance(obj, torch.nn.ModuleList) and len(obj):
            return obj
    tried = "; ".join(f"{p} ({fam})" for p, fam in BLOCK_PATHS.items())
    raise ConfigError(
        f"frozen_blocks needs the transformer blocks of {type(m).__name__}, which were not "
        f"found (tried {tried}); use frozen_blocks=0 with this model"
    )


def embedding_modules(model) -> list[torch.nn.Module]:
    """The input embedding and any learned position embedding beside the blocks."""
    emb = base_model(model).get_input_embeddings()
    out = [emb]
    parent = _parent_of(base_model(model), transformer_blocks(model))
    for child in parent.children() if parent is not None else ():
        if isinstance(child, torch.nn.Embedding) and child is not emb:
            out.append(child)  # GPT-2's wpe, OPT's embed_positions
    return out


def _parent_of(root, target):
    for module in root.modules():
        if any(child is target for child in module.children()):
            return module
    return None


def freeze_blocks_(model, n_blocks: int) -> int:
    """Freeze the embedding and the first ``n_blocks`` blocks (Yang et al., Fig. 5d).

    ``n_blocks=0`` freezes nothing. Returns the number of frozen parameters. With tied
    embeddings the output layer is the input embedding, so it is frozen too.
    """
    if n_blocks == 0:
        return 0
    layers = transformer_blocks(model)
    check_int("frozen_blocks", n_blocks, 0, len(layers))
    frozen = embedding_modules(model) + list(layers[:n_blocks])
    count = 0
    for module in frozen:
        for p in module.parameters():
            if p.requires_grad:
                p.requires_grad_(False)
                count += p.numel()
    return count


def is_tied(model) -> bool:
    """Whether the output layer's matrix is the input embedding's."""
    m = base_model(model)
    head = m.get_output_embeddings()
    return head is not None and head.weight is m.get_input_embeddings().weight


def restrict_vocab_(model, keep: np.ndarray) -> None:
    """Keep only rows ``keep`` of the input embedding and the output head, in that order.

    Model id k then means old id ``keep[k]``: the softmax runs over these tokens only. Tied
    embeddings stay tied.
    """
    m = base_model(model)
    tied = is_tied(m)
    idx = torch.as_tensor(np.asarray(keep), dtype=torch.long)
    emb, head = m.get_input_embeddings(), m.get_output_embeddings()
    with torch.no_grad():
        new_emb = torch.nn.Embedding(len(idx), emb.weight.shape[1])
        new_emb.weight.copy_(emb.weight[idx.to(emb.weight.device)])
        new_head = torch.nn.Linear(head.weight.shape[1], len(idx), bias=head.bias is not None)
        new_head.weight.copy_(head.weight[idx.to(head.weight.device)])
        if head.bias is not None:
            new_head.bias.copy_(head.bias[idx.to(head.bias.device)])
    if tied:
        new_head.weight = new_emb.weight
    m.set_input_embeddings(new_emb.to(emb.weight.device))
    m.set_output_embeddings(new_head.to(head.weight.device))
    m.config.vocab_size = len(idx)


def n_embedding_params(model) -> int:
    """Parameters of the input embedding and the output layer (a tied matrix counted once)."""
    m = base_model(model)
    params = {id(p): p for mod in (m.get_input_embeddings(), m.get_output_embeddings())
              for p in mod.parameters()}  # fmt: skip
    return sum(p.numel() for p in params.values())


def arch_of(config, vocab_size: int) -> Arch:
    """The shape of any causal LM from its config, for flop and memory estimates."""
    c = config.get_text_config() if hasattr(config, "get_text_config") else config
    d = int(c.hidden_size)
    mlp = next((getattr(c, k) for k in ("intermediate_size", "n_inner", "ffn_dim")
                if getattr(c, k, None)), 4 * d)  # fmt: skip
    ctx = next((int(getattr(c, k)) for k in CONTEXT_KEYS if getattr(c, k, None)), 2048)
    return Arch(d, int(c.num_hidden_layers), int(c.num_attention_heads), int(mlp), vocab_size, ctx)


def add_lora(model, rank: int, alpha: float, seed: int = 0):
    """``model`` with LoRA adapters of rank ``rank`` on every linear layer of its blocks
    (``peft``; the output layer and the embedding stay frozen, as every base weight)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError(
            f"lora_rank={rank} needs the peft package: pip install peft (or cldyn[lora])"
        ) from None
    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules="all-linear")
    with torch.random.fork_rng(devices=[]):  # LoRA's A matrices are drawn from the seed
        torch.manual_seed(seed)
        return get_peft_model(model, cfg)

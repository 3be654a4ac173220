"""The config of one cyclic fine-tuning run of Yang et al.: every variant of the paper is a field.

``CyclicConfig.preset("ci")`` is seconds on a CPU; ``"laptop"`` minutes; ``"gpu"`` and
``"paper"`` fine-tune real Pythia checkpoints. The engine is :func:`cldyn_lib.run_cyclic`.

Your own model and documents: ``causal_lm`` names any ``transformers`` causal LM (a folder
written by ``save_pretrained`` or a hub id, with its tokenizer) and ``docs`` any texts (a
``.jsonl``, a ``.txt``, a folder of ``.txt`` files or a hub dataset); every option of the
protocol applies to them (:mod:`cldyn_lib.models.causal_lm`, :mod:`cldyn_lib.data.texts`).
``vocab="full"`` keeps every row of the model's embedding (Pythia: 50,304), ``"tokenizer"``
the tokenizer's ids (Pythia: 50,277, as Yang et al.'s code resizes to; see
:func:`cldyn_lib.data.documents.tokenizer_vocab` for what the difference costs).

Taught in the chapters *Anticipatory recovery in a language model*, *Emergence with scale* and
*What drives recovery*.
"""

from __future__ import annotations

import dataclasses
import warnings

from ..config import (
    Config,
    ConfigError,
    check_bool,
    check_choice,
    check_float,
    check_int,
    resolve_device,
)
from ..data.articles import ARTICLE_POOLS
from ..data.documents import WINDOWS
from ..models import causal_lm as clm
from ..models import gpt_neox as lm
from ..models.small_lm import SmallLMConfig

OPTIMIZERS = ("sgd", "adam")
DEFAULT_LR = {"sgd": 1e-3, "adam": 1e-4}  #: Yang et al.: GD 1e-3; its Adam scripts use 1e-4
ORDERS = ("cyclic", "shuffled", "partial", "reversed")
WEIGHTS = ("random", "pretrained", "standin")
VOCABS = ("full", "docs", "common", "tokenizer")
DOC_SELECTIONS = ("random", "first")
KNOBS = ("width", "depth", "heads", "mlp_width")  #: random-init shape knobs of Pythia models
LR_SCALINGS = ("none", "inverse_steps")


@dataclasses.dataclass(frozen=True)
class CyclicConfig(Config):
    """One cyclic fine-tuning run. The defaults are Yang et al.'s (Fig. 1: pre-trained Pythia-1B)."""

    # the task sequence
    n_docs: int = 25  #: T, documents per epoch
    context: int = 256  #: C, tokens per document (first C; shorter ones padded)
    steps: int = 10  #: M, gradient steps per document (an episode), batch size 1
    epochs: int = 5  #: E
    pool: str = "permissive"  #: articles to draw from ("permissive": 270, "all": 2,370)
    require_full: bool = True  #: only articles with >= C tokens (2C for the centre window)
    order: str = "cyclic"  #: "cyclic", "shuffled" (null control), "partial", "reversed"
    shuffle_n: int = 0  #: partial shuffling: documents 2..N re-drawn every epoch (N in 2..T)
    # optimisation
    optimizer: str = "sgd"  #: "sgd" (plain gradient descent) or "adam"
    lr: float | None = None  #: None: 1e-3 for sgd, 1e-4 for adam
    lr_scaling: str = "none"  #: "inverse_steps": lr * 10 / M (appendix B.5)
    reset_optimizer: bool = True  #: adam: a fresh state for every document
    frozen_blocks: int = 0  #: freeze the embedding and the first B blocks (Yang et al.'s Fig. 5d)
    mask_prob: float = 0.0  #: each token -> id 0 with this probability (Yang et al.'s Fig. 4a)
    window: str = "first"  #: "first" C tokens, or "centre" (train at C/2+s, evaluate at C/2)
    shift: int = 0  #: w, window shifts s ~ U{-w..w} per step (needs window="centre")
    # the model
    model: str = "pythia-1b"  #: Pythia shape (and checkpoint name)
    weights: str = "pretrained"  #: "pretrained" (Pythia), "random", "standin" (made here)
    weights_path: str = ""  #: local folder written by save_pretrained, instead of the hub
    width: int = 0  #: 0 = the model's; the knobs only apply to random and stand-in weights
    depth: int = 0
    heads: int = 0
    mlp_width: int = 0
    init: str = "pythia"  #: random init: "pythia" (small/wang init), "gaussian" (0.02), "step0"
    init_dims: str = "model"  #: "model" (real d, L) or "reference" (d=2048, L=16 as in Yang et al.)
    vocab: str = "full"  #: "full" (all rows), "docs" (ids in the documents), "common", "tokenizer"
    vocab_k: int = 2048  #: size of the common vocabulary
    pretrain_steps: int = 300  #: stand-in: pre-training steps (its cache key)
    # execution
    seed: int = 0
    device: str = "auto"
    tf32: bool = False  #: CUDA only: TF32 matmuls
    bf16: bool = False  #: CUDA only: bfloat16 autocast in forward passes
    eval_batch: int = 0  #: documents per evaluation forward; 0 = as many as fit a budget
    # your own model and documents (the appendix *Your own model*)
    causal_lm: str = ""  #: folder or hub id of any causal LM with its tokenizer ("": Pythia)
    docs: str = ""  #: .jsonl, .txt, a folder of .txt or hf:NAME[:CONFIG[:SPLIT]] ("": pool)
    docs_field: str = "text"  #: the text field of each .jsonl line (or the dataset's column)
    doc_selection: str = "random"  #: "random" (T drawn with the seed) or "first" (file order)
    lora_rank: int = 0  #: LoRA adapters of this rank through peft (0: train every weight)
    lora_alpha: float = 16.0  #: LoRA scale alpha (updates scaled by alpha / rank)

    #: added after results were committed: left out of ``key()`` at their defaults
    KEY_OMIT_DEFAULTS = ("causal_lm", "docs", "docs_field", "doc_selection", "lora_rank",
                         "lora_alpha")  # fmt: skip

    PRESETS = {
        # ci: seconds on 2 CPU cores. A tiny random-init GPT-NeoX, Adam reset per document,
        # softmax over the documents' own tokens; the chapter *The phenomenon* says why.
        "ci": dict(
            n_docs=10, context=64, steps=10, epochs=4, optimizer="adam", lr=1e-3,
            weights="random", width=64, depth=2, heads=4, vocab="docs", device="cpu",
            pretrain_steps=100,
        ),
        # laptop: about 30 s per run on one CPU core (paper's T, M and E; C = 64)
        "laptop": dict(
            n_docs=25, context=64, steps=10, epochs=5, optimizer="adam", lr=1e-3,
            weights="random", width=128, depth=4, heads=4, vocab="docs", device="cpu",
            pretrain_steps=3000,
        ),
        # gpu and paper: real Pythia checkpoints, the paper's plain GD with lr 1e-3
        "gpu": dict(model="pythia-160m", weights="pretrained", tf32=True),
        "paper": dict(model="pythia-1b", weights="pretrained"),
    }  # fmt: skip

    @classmethod
    def preset(cls, scale: str, **overrides):
        """The config for a named scale (see :meth:`cldyn_lib.config.Config.preset`).

        A preset's random-init shape (``width``, ``depth``, ``heads``, ``mlp_width``) does
        not apply to a checkpoint with its own shape: with ``weights="pretrained"`` or a
        ``causal_lm`` those knobs are reset to 0 (with a warning saying so), unless given.
        """
        base = cls.PRESETS.get(scale, {})
        weights = overrides.get("weights", base.get("weights", "pretrained"))
        own_shape = weights == "pretrained" or bool(
            overrides.get("causal_lm", base.get("causal_lm"))
        )
        reset = {k: 0 for k in KNOBS if own_shape and base.get(k) and k not in overrides}
        if reset:
            shown = ", ".join(f"{k}={base[k]}" for k in reset)
            what = "a causal_lm" if overrides.get("causal_lm") else "weights='pretrained'"
            warnings.warn(
                f"preset {scale!r} sets {shown} for random weights; reset to 0 for {what} "
                "(the model keeps its own shape)",
                UserWarning,
                stacklevel=2,
            )
        return super().preset(scale, **{**overrides, **reset})

    def validate(self) -> None:
        for flag in ("require_full", "reset_optimizer", "tf32", "bf16"):
            check_bool(flag, getattr(self, flag))
        check_int("n_docs", self.n_docs, 1, 10_000)
        check_int("context", self.context, 8, lm.CONTEXT if not self.causal_lm else 10**7)
        check_int("steps", self.steps, 1, 100_000)
        check_int("epochs", self.epochs, 1, 10_000)
        check_choice("pool", self.pool, ARTICLE_POOLS)
        check_choice("order", self.order, ORDERS)
        if self.order == "partial":
            check_int("shuffle_n", self.shuffle_n, 2, self.n_docs)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.lr is not None:
            check_float("lr", self.lr, 0, None, lo_open=True)
        check_choice("lr_scaling", self.lr_scaling, LR_SCALINGS)
        check_float("mask_prob", self.mask_prob, 0, 1, hi_open=True)
        check_choice("window", self.window, WINDOWS)
        check_int("shift", self.shift, 0, self.context // 2)
        if self.shift and self.window != "centre":
            raise ConfigError(f"shift={self.shift} needs window='centre'; got {self.window!r}")
        check_choice("model", self.model, lm.MODELS)
        check_choice("weights", self.weights, WEIGHTS)
        self.validate_own()
        check_choice("init", self.init, lm.INITS)
        check_choice("init_dims", self.init_dims, lm.INIT_DIMS)
        check_choice("vocab", self.vocab, VOCABS)
        check_int("vocab_k", self.vocab_k, 16, 50_304)
        check_int("pretrain_steps", self.pretrain_steps, 1, 10**7)
        if self.weights == "pretrained":
            for knob in ("width", "depth", "heads", "mlp_width"):
                if getattr(self, knob):
                    raise ConfigError(
                        f"{knob} must be 0 with weights='pretrained' (a checkpoint has its "
                        f"own shape); got {getattr(self, knob)}"
                    )
        if self.weights == "standin" and self.vocab != "common":
            raise ConfigError(f"vocab must be 'common' with weights='standin'; got {self.vocab!r}")
        if not self.causal_lm:  # a causal_lm's shape is checked by check_resources
            a = self.arch()
            check_int("context", self.context, 8, a.context)  # the model's positions
            check_int("frozen_blocks", self.frozen_blocks, 0, a.depth)
        check_int("seed", self.seed, 0, 2**32 - 1)
        check_choice("device", self.device, ("auto", "cpu", "cuda"))
        if self.device == "cpu" and (self.tf32 or self.bf16):
            raise ConfigError("tf32 and bf16 need device='cuda' (CPU runs are float32)")
        check_int("eval_batch", self.eval_batch, 0, 100_000)

    def validate_own(self) -> None:
        """The fields of your own model and documents (files are read by check_resources)."""
        for name in ("causal_lm", "docs", "docs_field"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string; got {getattr(self, name)!r}")
        if not self.docs_field:
            raise ConfigError("docs_field must name a text field; got ''")
        check_choice("doc_selection", self.doc_selection, DOC_SELECTIONS)
        check_int("lora_rank", self.lora_rank, 0, 4096)
        check_float("lora_alpha", self.lora_alpha, 0, None, lo_open=True)
        if self.lora_rank and self.frozen_blocks:
            raise ConfigError(
                "frozen_blocks must be 0 with lora_rank > 0 (LoRA trains adapters only)"
            )
        if not self.causal_lm:
            if self.lora_rank:
                raise ConfigError("lora_rank > 0 needs a causal_lm (LoRA is for your own models)")
            return
        if self.weights not in ("pretrained", "random"):
            raise ConfigError(
                f"weights must be 'pretrained' or 'random' with a causal_lm; got {self.weights!r}"
            )
        for knob in KNOBS:
            if getattr(self, knob):
                raise ConfigError(
                    f"{knob} must be 0 with a causal_lm (the model has its own shape); "
                    f"got {getattr(self, knob)}"
                )
        if self.vocab == "common":
            raise ConfigError(
                "vocab must be 'full', 'tokenizer' or 'docs' with a causal_lm; got 'common'"
            )
        if self.init != "pythia" or self.init_dims != "model":
            raise ConfigError(
                "init and init_dims apply to the book's Pythia models; a causal_lm with "
                f"weights='random' uses its own initialisation (got init={self.init!r})"
            )
        if self.weights_path:
            raise ConfigError("weights_path is for Pythia models; give the folder as causal_lm")

    # ---------------------------------------------------------------- derived values

    def arch(self, vocab_size: int = lm.FULL_VOCAB_SIZE) -> lm.Arch:
        """The model's shape (the vocabulary size is only known once documents are drawn)."""
        if self.weights == "standin":
            return self.small_lm_config().arch()
        if self.weights == "pretrained" and self.weights_path:
            return lm.arch_of_folder(self.weights_path)
        return lm.pythia_arch(
            self.model, self.width, self.depth, self.heads, self.mlp_width, vocab_size
        )

    def small_lm_config(self) -> SmallLMConfig:
        """The stand-in's config (``weights="standin"``): the knobs set its shape."""
        return SmallLMConfig(
            width=self.width or 64, depth=self.depth or 2, heads=self.heads or 4,
            mlp_width=self.mlp_width, vocab_k=self.vocab_k, steps=self.pretrain_steps,
            seq=max(64, self.context),
        )  # fmt: skip

    @property
    def learning_rate(self) -> float:
        """The step size used: ``lr`` (or the optimiser's default), scaled by 10/M if asked."""
        lr = DEFAULT_LR[self.optimizer] if self.lr is None else self.lr
        return lr * 10 / self.steps if self.lr_scaling == "inverse_steps" else lr

    def check_resources(self) -> str:
        """Checks that need the machine (CUDA, weights on disk); returns the device.

        Raises ConfigError before any compute.
        """
        device = resolve_device(self.device)
        if device == "cpu" and (self.tf32 or self.bf16):
            raise ConfigError("tf32 and bf16 need CUDA; this machine has none (use device='cpu')")
        if self.causal_lm:
            self.check_causal_lm()
            return device
        revision = "step0" if self.init == "step0" else None
        needs_hub = self.weights == "pretrained" or (
            self.weights == "random" and self.init == "step0"
        )
        if needs_hub and not lm.weights_available(self.model, self.weights_path, revision):
            where = self.weights_path or f"{lm.hub_id(self.model)} in the Hugging Face cache"
            raise ConfigError(
                f"weights={self.weights!r} (init={self.init!r}) needs {self.model} weights, but "
                f"none were found at {where} and the hub is offline; pass weights_path= (a "
                "folder written by save_pretrained), go online, or use weights='standin'"
            )
        return device

    def check_causal_lm(self):
        """A ``causal_lm``'s checks that read its config (no weights are loaded): a causal
        LM without remote code, with weights if ``weights="pretrained"``, ``context`` within
        its positions, ``frozen_blocks`` within its blocks. Returns what was read."""
        spec = clm.inspect_causal_lm(self.causal_lm, need_weights=self.weights == "pretrained")
        if spec.context is not None and self.context > spec.context:
            raise ConfigError(
                f"context (C) must be <= {spec.context}, the positions of {self.causal_lm!r} "
                f"(its max_position_embeddings); got {self.context}"
            )
        check_int("frozen_blocks", self.frozen_blocks, 0, spec.depth)
        if self.lora_rank:
            try:
                import peft  # noqa: F401
            except ImportError:
                raise ConfigError(
                    "lora_rank > 0 needs the peft package: pip install peft"
                ) from None
        return spec

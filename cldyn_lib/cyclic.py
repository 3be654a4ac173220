"""The cyclic training engine of paper B: T documents, M steps each, in a repeated order.

A run is one :class:`CyclicConfig` (every variant of the paper is a field) and one call::

    res = run_cyclic(CyclicConfig.preset("ci", seed=1))
    res.losses      # (E*T + 1, T): row 0 before training, row k after episode k
    res.schedule    # (E, T): the document trained in each episode
    cl.recovery_scores(res.losses, res.schedule)

The loop lives in :func:`run_cyclic` and reads top to bottom: for every episode, M optimiser
steps on one document (batch size 1), then the loss of all T documents in a few batched
forward passes (right padding is masked out of the loss), kept on the device and copied to
the host once per epoch. Everything the loop changes is in one :class:`CyclicState` (model,
optimiser, random generators, schedule, the partial loss matrix, the episode counter), so a
run can be inspected, checkpointed or probed between episodes.

Seeds: the documents, the order, the initialisation, the window shifts and the masks each
come from their own generator derived from ``config.seed``; on a CPU the same seed gives
bitwise the same loss matrix.

Taught in the chapters *The phenomenon*, *Emergence with scale* and *What drives recovery*.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import lm, metrics
from .config import (
    Config,
    ConfigError,
    check_bool,
    check_choice,
    check_float,
    check_int,
    resolve_device,
)
from .documents import (
    ARTICLE_POOLS,
    WINDOWS,
    Documents,
    Vocab,
    full_vocab,
    select_documents,
    tokenize_pool,
    vocab_of,
)

OPTIMIZERS = ("sgd", "adam")
DEFAULT_LR = {"sgd": 1e-3, "adam": 1e-4}  #: paper B: GD 1e-3; its Adam scripts use 1e-4
ORDERS = ("cyclic", "shuffled", "partial", "reversed")
WEIGHTS = ("random", "pretrained", "standin")
VOCABS = ("full", "docs", "common")
LR_SCALINGS = ("none", "inverse_steps")
LONG_RUN_S = 60  #: print the estimated time and memory before runs longer than this


@dataclasses.dataclass(frozen=True)
class CyclicConfig(Config):
    """One cyclic fine-tuning run. The defaults are paper B's (Fig. 1: pre-trained Pythia-1B)."""

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
    frozen_blocks: int = 0  #: freeze the embedding and the first B blocks (Fig. 5d)
    mask_prob: float = 0.0  #: replace each input token by id 0 with this probability (Fig. 4a)
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
    init_dims: str = "model"  #: "model" (real d, L) or "reference" (d=2048, L=16 as in paper B)
    vocab: str = "full"  #: "full", "docs" (ids in the documents), "common" (stand-in's, see docs)
    vocab_k: int = 2048  #: size of the common vocabulary
    pretrain_steps: int = 300  #: stand-in: pre-training steps (its cache key)
    # execution
    seed: int = 0
    device: str = "auto"
    tf32: bool = False  #: CUDA only: TF32 matmuls
    bf16: bool = False  #: CUDA only: bfloat16 autocast in forward passes
    eval_batch: int = 0  #: documents per evaluation forward; 0 = as many as fit a budget

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

    def validate(self) -> None:
        for flag in ("require_full", "reset_optimizer", "tf32", "bf16"):
            check_bool(flag, getattr(self, flag))
        check_int("n_docs", self.n_docs, 1, 10_000)
        check_int("context", self.context, 8, lm.CONTEXT)
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
        a = self.arch()
        check_int("context", self.context, 8, a.context)  # the model's positions
        check_int("frozen_blocks", self.frozen_blocks, 0, a.depth)
        check_int("seed", self.seed, 0, 2**32 - 1)
        check_choice("device", self.device, ("auto", "cpu", "cuda"))
        if self.device == "cpu" and (self.tf32 or self.bf16):
            raise ConfigError("tf32 and bf16 need device='cuda' (CPU runs are float32)")
        check_int("eval_batch", self.eval_batch, 0, 100_000)

    # ---------------------------------------------------------------- derived values

    def arch(self, vocab_size: int = lm.FULL_VOCAB_SIZE) -> lm.Arch:
        """The model's shape (the vocabulary size is only known once documents are drawn)."""
        if self.weights == "standin":
            return self.standin_config().arch()
        if self.weights == "pretrained" and self.weights_path:
            return lm.arch_of_folder(self.weights_path)
        return lm.arch(self.model, self.width, self.depth, self.heads, self.mlp_width, vocab_size)

    def standin_config(self):
        from .standin import StandinConfig

        return StandinConfig(
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


# ---------------------------------------------------------------- result


@dataclasses.dataclass
class CyclicResult:
    """Output of :func:`run_cyclic` (or of :func:`load_reference_npz`)."""

    losses: np.ndarray  #: (E*T+1, T), nats per token
    schedule: np.ndarray  #: (E, T)
    train_losses: np.ndarray  #: (E*T, M): the loss at each step, before its update
    doc_ids: list[str]
    provenance: dict[str, Any]
    config: CyclicConfig | None = None

    def recovery_scores(self) -> np.ndarray:
        return metrics.recovery_scores(self.losses, self.schedule)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for :func:`cldyn_lib.results.save_result`."""
        return {
            "losses": self.losses,
            "schedule": self.schedule,
            "train_losses": self.train_losses,
            "doc_ids": np.array(self.doc_ids, dtype=str),
        }


def load_reference_npz(path, schedule=None) -> CyclicResult:
    """A result file of paper B's own code (``eval_losses_ckpt``, shape (E*T+1, T)).

    Its scripts train in the same order every epoch; pass ``schedule`` for the partial-shuffle
    variants. Loaded without pickles.
    """
    with np.load(path, allow_pickle=False) as data:
        if "eval_losses_ckpt" not in data.files:
            raise ValueError(f"{path}: no 'eval_losses_ckpt' array (found {data.files})")
        losses = np.asarray(data["eval_losses_ckpt"], dtype=float)
    losses, schedule = metrics.check_loss_matrix(losses, schedule)
    E, T = schedule.shape
    prov = {"source": "paper B reference code", "file": str(path)}
    ids = [f"doc{t}" for t in range(T)]
    return CyclicResult(losses, schedule, np.zeros((E * T, 0)), ids, prov)


# ---------------------------------------------------------------- the state of a run


@dataclasses.dataclass
class CyclicState:
    """Everything :func:`run_cyclic` changes: one object to inspect, checkpoint or probe."""

    config: CyclicConfig
    device: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None
    docs: Documents
    vocab: Vocab
    tokens: torch.Tensor  #: (T, W) model ids on the device, padded
    lengths: torch.Tensor  #: (T,) real tokens per document
    schedule: np.ndarray  #: (E, T)
    shift_rng: np.random.Generator  #: window shifts
    mask_gen: torch.Generator  #: token masks (on the device)
    losses: torch.Tensor  #: (E*T+1, T) on the device; rows filled so far are valid
    train_losses: torch.Tensor  #: (E*T, M) on the device
    host_losses: np.ndarray  #: copy of ``losses`` made once per epoch
    episode: int = 0  #: episodes done
    info: dict = dataclasses.field(default_factory=dict)


def _subseed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def make_schedule(config: CyclicConfig) -> np.ndarray:
    """The (E, T) order of documents for ``config.order`` (document 0 is "document 1")."""
    T, E = config.n_docs, config.epochs
    rng = np.random.default_rng([config.seed, 1])
    base = np.arange(T)
    if config.order == "cyclic":
        return np.tile(base, (E, 1))
    if config.order == "shuffled":
        return np.stack([rng.permutation(T) for _ in range(E)])
    if config.order == "partial":  # x_1 first, x_2..x_N reshuffled, the rest in place
        N = config.shuffle_n
        return np.stack([np.r_[0, 1 + rng.permutation(N - 1), base[N:]] for _ in range(E)])
    rows = np.tile(base, (E, 1))  # "reversed": the last epoch runs x_T, ..., x_1
    rows[-1] = base[::-1]
    return rows


def _make_model(config: CyclicConfig, info: dict):
    if config.weights == "pretrained":
        return lm.load_pretrained(config.model, config.weights_path)
    if config.weights == "standin":
        from .standin import load_standin

        s = load_standin(config.standin_config(), progress=False)
        info["standin"] = {k: v for k, v in s.info.items() if k != "config"}
        return s.model
    if config.init == "step0":
        return lm.load_pretrained(config.model, config.weights_path, revision="step0")
    init_seed = _subseed(config.seed, 2)
    a = config.arch(vocab_size=info["base_vocab_size"])
    return lm.build_random(a, config.init, config.init_dims, init_seed)


def _base_vocab(config: CyclicConfig) -> Vocab:
    if config.vocab == "common":
        from .standin import standin_vocab

        return standin_vocab(config.vocab_k)
    return full_vocab()


def setup(config: CyclicConfig, device: str | None = None) -> CyclicState:
    """Draw the documents, build the model and the loss buffers: episode 0 of a run."""
    device = device or config.check_resources()
    pool = tokenize_pool(config.pool)
    exclude = frozenset()
    if config.weights == "standin" or config.vocab == "common":
        from .standin import pretraining_corpus

        exclude = frozenset(pretraining_corpus().ids)  # never fine-tune on pre-training text
    docs = select_documents(
        pool, config.n_docs, config.context, window=config.window, seed=config.seed,
        require_full=config.require_full, exclude=exclude,
    )  # fmt: skip
    # vocab: the model's ids; keep: the rows of a loaded model's embedding and head to keep
    base = _base_vocab(config)
    if config.vocab == "full":
        vocab, keep = base, None
    elif config.vocab == "docs":
        vocab = vocab_of(docs.tokens)
        keep = vocab.ids
    else:
        vocab, keep = base.restrict(docs.tokens)
    loaded = config.weights in ("pretrained", "standin") or config.init == "step0"
    info: dict[str, Any] = {"base_vocab_size": base.size if loaded else vocab.size}
    info["vocab_size"] = vocab.size
    model = _make_model(config, info)  # random models are built at the final size
    if loaded and keep is not None:
        lm.restrict_vocab_(model, keep)
    info["frozen_params"] = lm.freeze_blocks_(model, config.frozen_blocks)
    info["n_params"] = sum(p.numel() for p in model.parameters())
    info["n_params_non_embedding"] = info["n_params"] - 2 * vocab.size * model.config.hidden_size
    model.to(device).train()
    E, T, M = config.epochs, config.n_docs, config.steps
    tokens = torch.as_tensor(vocab.encode(docs.tokens), device=device)
    mask_gen = torch.Generator(device=device).manual_seed(_subseed(config.seed, 4))
    return CyclicState(
        config=config, device=device, model=model, optimizer=None, docs=docs, vocab=vocab,
        tokens=tokens, lengths=torch.as_tensor(docs.lengths, device=device),
        schedule=make_schedule(config), shift_rng=np.random.default_rng([config.seed, 3]),
        mask_gen=mask_gen, losses=torch.zeros(E * T + 1, T, device=device),
        train_losses=torch.zeros(E * T, M, device=device),
        host_losses=np.full((E * T + 1, T), np.nan), info=info,
    )  # fmt: skip


def make_optimizer(state: CyclicState) -> torch.optim.Optimizer:
    cfg = state.config
    params = [p for p in state.model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.learning_rate)  # no momentum, no weight decay
    try:
        return torch.optim.Adam(params, lr=cfg.learning_rate, fused=True)
    except (RuntimeError, TypeError):  # an old torch without fused Adam on this device
        return torch.optim.Adam(params, lr=cfg.learning_rate)


def _autocast(state: CyclicState):
    if state.config.bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(state.device, enabled=False)


def window_start(state: CyclicState) -> int:
    """Start of the next training window: ``C/2 + s`` with ``s ~ U{-w..w}`` when shifting."""
    start = state.docs.eval_start
    w = state.config.shift
    return start + int(state.shift_rng.integers(-w, w + 1)) if w else start


def mask_tokens(ids: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """``ids`` with each token replaced by id 0 with probability ``p`` (Fig. 4a)."""
    if not p:
        return ids
    hit = torch.rand(ids.shape, generator=gen, device=ids.device)
    return torch.where(hit < p, torch.zeros_like(ids), ids)


def train_episode(state: CyclicState, doc: int) -> None:
    """M steps of the optimiser on document ``doc`` (batch size 1)."""
    cfg, C = state.config, state.config.context
    if state.optimizer is None or (cfg.optimizer == "adam" and cfg.reset_optimizer):
        state.optimizer = make_optimizer(state)
    for m in range(cfg.steps):
        start = window_start(state)
        ids = state.tokens[doc : doc + 1, start : start + C]
        n = (state.lengths[doc : doc + 1] - start).clamp(0, C)
        inputs = mask_tokens(ids, cfg.mask_prob, state.mask_gen)
        with _autocast(state):
            logits = state.model(input_ids=inputs).logits
        loss = lm.document_losses(logits, ids, n)[0]  # labels are the unmasked tokens
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        state.train_losses[state.episode, m] = loss.detach()


def eval_chunk(state: CyclicState) -> int:
    """Documents per evaluation forward: all of them unless the logits would be too big."""
    if state.config.eval_batch:
        return state.config.eval_batch
    budget = (2**30 if state.device == "cuda" else 2**28) // 4  # floats of logits per forward
    return max(1, min(state.config.n_docs, budget // (state.config.context * state.vocab.size)))


@torch.no_grad()
def evaluate(state: CyclicState) -> torch.Tensor:
    """Loss of every document on its evaluation window, in batched forwards: (T,) on device."""
    C, s = state.config.context, state.docs.eval_start
    ids = state.tokens[:, s : s + C]
    n = (state.lengths - s).clamp(0, C)
    chunk = eval_chunk(state)
    out = []
    for a in range(0, len(ids), chunk):
        with _autocast(state):
            logits = state.model(input_ids=ids[a : a + chunk]).logits
        out.append(lm.document_losses(logits, ids[a : a + chunk], n[a : a + chunk]))
    return torch.cat(out)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_cyclic(
    config: CyclicConfig,
    *,
    progress: bool = True,
    timing: bool = False,
    state=None,
    checkpoint_dir=None,
    checkpoint_every: int = 1,
    deterministic: bool = False,
    probe=None,
) -> CyclicResult:
    """Run cyclic fine-tuning for ``config``; see the module docstring.

    ``timing=True`` synchronises CUDA around each phase so that the recorded training and
    evaluation times are exact (CPU timings are always exact). ``state`` continues a run
    made with :func:`setup` from its ``episode``.

    ``checkpoint_dir``: save the run's state there every ``checkpoint_every`` epochs and
    resume from it when it exists (bitwise the same result on a CPU; see
    :mod:`cldyn_lib.checkpoint`). ``deterministic``: CUDA's deterministic algorithms. A
    non-finite loss raises :class:`cldyn_lib.checkpoint.DivergedError` at the end of its
    epoch, naming the episode and step and carrying the partial result.

    ``probe`` (default None: nothing extra runs) is called as ``probe(state)`` at every
    evaluation point, after the evaluation of episode ``state.episode`` (0: before
    training); it must leave the weights, the optimiser and the generators as it found them
    (see :mod:`cldyn_lib.probes`). Its time is not counted in ``train_s`` or ``eval_s``.
    """
    from . import checkpoint as ck

    t0 = time.perf_counter()
    saver = ck.checkpointer(checkpoint_dir, "cyclic", config, checkpoint_every)
    if state is None:
        state = setup(config, device=config.check_resources())  # errors before any compute
        blob = saver.load() if saver is not None else None
        if blob is not None:
            ck.restore_cyclic(state, blob)
            state.info["resumed_at_episode"] = state.episode
            if blob["status"] == "diverged":  # resuming cannot undo it: say so again
                raise ck.cyclic_diverged(state, blob["diverged"], None, _result(state, {}))
    if state.episode == 0:
        est = ck.estimate_cyclic(state)
        if est["seconds"] > LONG_RUN_S:
            print(ck.describe_estimate(est))
    cfg, E, T = state.config, state.config.epochs, state.config.n_docs
    tf32_before = torch.backends.cuda.matmul.allow_tf32
    if state.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        torch.backends.cudnn.allow_tf32 = cfg.tf32
    clock = {"setup_s": time.perf_counter() - t0, "train_s": 0.0, "eval_s": 0.0}
    stack = ck.deterministic(deterministic)
    stack.__enter__()
    try:
        if state.episode == 0:
            state.losses[0] = evaluate(state)
            if probe is not None:
                probe(state)
        bar = tqdm(total=E * T, initial=state.episode, desc="episodes", disable=not progress)
        while state.episode < E * T:
            epoch, k = divmod(state.episode, T)
            t1 = time.perf_counter()
            train_episode(state, int(state.schedule[epoch, k]))
            if timing:
                _sync(state.device)
            t2 = time.perf_counter()
            state.losses[state.episode + 1] = evaluate(state)
            if timing:
                _sync(state.device)
            clock["train_s"] += t2 - t1
            clock["eval_s"] += time.perf_counter() - t2
            state.episode += 1
            if probe is not None:
                probe(state)
            if k == T - 1:  # one host copy per epoch
                rows = slice(epoch * T + 1 - (epoch == 0), (epoch + 1) * T + 1)
                state.host_losses[rows] = state.losses[rows].cpu().numpy()
                bad = ck.cyclic_divergence(state, epoch)
                if bad is not None:
                    bar.close()
                    raise ck.cyclic_diverged(state, bad, saver, _result(state, clock))
                done = state.episode == E * T
                if saver is not None and (done or (epoch + 1) % saver.every == 0):
                    saver.save(ck.cyclic_payload(state), "finished" if done else "running")
            bar.update(1)
        bar.close()
    finally:
        stack.__exit__(None, None, None)
        if state.device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tf32_before
    clock["total_s"] = time.perf_counter() - t0
    return _result(state, clock)


def _result(state: CyclicState, clock: dict) -> CyclicResult:
    from .results import provenance

    cfg = state.config
    a = state.model.config
    seq_flops = lm.Arch(
        a.hidden_size, a.num_hidden_layers, a.num_attention_heads, a.intermediate_size,
        state.vocab.size,
    ).flops_per_token(cfg.context) * cfg.context  # fmt: skip
    extra = {
        "run": {
            **state.info, **clock,
            "device": state.device, "tf32": cfg.tf32, "bf16": cfg.bf16,
            "learning_rate": cfg.learning_rate, "vocab": state.vocab.name,
            "eval_docs_per_forward": eval_chunk(state),
            "train_flops": 3 * seq_flops * cfg.epochs * cfg.n_docs * cfg.steps,
            "eval_flops": seq_flops * (cfg.epochs * cfg.n_docs + 1) * cfg.n_docs,
        },
        "doc_ids": state.docs.ids,
    }  # fmt: skip
    tokens_src = tokenize_pool(cfg.pool).sources
    prov = provenance(cfg, device=state.device, sources=tokens_src, extra=extra)
    return CyclicResult(
        losses=state.host_losses.copy(),
        schedule=state.schedule.copy(),
        train_losses=state.train_losses.cpu().numpy(),
        doc_ids=list(state.docs.ids),
        provenance=prov,
        config=cfg,
    )


def run_seeds(
    config: CyclicConfig, seeds, progress: bool = False, batched: bool = False
) -> list[CyclicResult]:
    """The same run for every seed in ``seeds`` (documents, order and init all change).

    ``batched=True`` trains the seeds as one batched model
    (:func:`cldyn_lib.vmapped.run_cyclic_vmapped`, appendix *Many runs at once*): the same
    results to float tolerance, faster for small models.
    """
    configs = [config.replace(seed=int(s)) for s in seeds]
    if batched and len(configs) > 1:
        from .vmapped import run_cyclic_vmapped

        return run_cyclic_vmapped(configs, progress=progress)
    return [run_cyclic(c, progress=progress) for c in configs]

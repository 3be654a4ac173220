"""The cyclic training engine of Yang et al.: T documents, M steps each, in a repeated order.

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

Taught in the chapters *Anticipatory recovery in a language model*, *Emergence with scale* and *What drives recovery*.
"""

from __future__ import annotations

import time

import torch

from .. import checkpoint as ck
from ..models import gpt_neox as lm
from ..progress import tqdm
from . import resume
from .config import CyclicConfig
from .estimate import LONG_RUN_S, describe_estimate, estimate_cyclic
from .result import CyclicResult, result_of
from .state import CyclicState, eval_chunk, make_optimizer, setup_cyclic


def autocast(state: CyclicState):
    """bf16 autocast on CUDA when the config asks for it, else full precision."""
    if state.config.bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(state.device, enabled=False)


def window_start(state: CyclicState) -> int:
    """Start of the next training window: ``C/2 + s`` with ``s ~ U{-w..w}`` when shifting."""
    start = state.docs.eval_start
    w = state.config.shift
    return start + int(state.shift_rng.integers(-w, w + 1)) if w else start


def mask_tokens(ids: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """``ids`` with each token replaced by id 0 with probability ``p`` (Yang et al.'s Fig. 4a)."""
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
        with autocast(state):
            logits = state.model(input_ids=inputs).logits
        loss = lm.document_losses(logits, ids, n)[0]  # labels are the unmasked tokens
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        state.train_losses[state.episode, m] = loss.detach()


@torch.no_grad()
def evaluate_documents(state: CyclicState) -> torch.Tensor:
    """Loss of every document on its evaluation window, in batched forwards: (T,) on device.

    The model is evaluated in ``eval()`` mode (no dropout: GPT-2 has 0.1) and put back into
    the mode it was in; Pythia's dropout is 0, so for it the two modes give the same numbers.
    """
    C, s = state.config.context, state.docs.eval_start
    ids = state.tokens[:, s : s + C]
    n = (state.lengths - s).clamp(0, C)
    chunk = eval_chunk(state)
    out = []
    was_training = state.model.training
    state.model.eval()
    try:
        for a in range(0, len(ids), chunk):
            with autocast(state):
                logits = state.model(input_ids=ids[a : a + chunk]).logits
            out.append(lm.document_losses(logits, ids[a : a + chunk], n[a : a + chunk]))
    finally:
        state.model.train(was_training)
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
    desc: str = "episodes",
) -> CyclicResult:
    """Run cyclic fine-tuning for ``config``; see the module docstring.

    ``timing=True`` synchronises CUDA around each phase so that the recorded training and
    evaluation times are exact (CPU timings are always exact). ``state`` continues a run
    made with :func:`~cldyn_lib.setup_cyclic` from its ``episode`` (a fresh one, at episode
    0, is first restored from ``checkpoint_dir`` when a checkpoint is there). ``desc``
    labels the progress bar.

    ``checkpoint_dir``: save the run's state there every ``checkpoint_every`` epochs and
    resume from it when it exists (bitwise the same result on a CPU; see
    :mod:`cldyn_lib.checkpoint`). ``deterministic``: CUDA's deterministic algorithms. A
    non-finite loss raises :class:`cldyn_lib.checkpoint.DivergedError` at the end of its
    epoch, naming the episode and step and carrying the partial result.

    ``probe`` (default None: nothing extra runs) is called as ``probe(state)`` at every
    evaluation point, after the evaluation of episode ``state.episode`` (0: before
    training); it must leave the weights, the optimiser and the generators as it found them
    (see :mod:`cldyn_lib.cyclic.probes`). Its time is not counted in ``train_s`` or ``eval_s``.
    """
    t0 = time.perf_counter()
    saver = ck.checkpointer(checkpoint_dir, "cyclic", config, checkpoint_every)
    if state is None:
        state = setup_cyclic(config, device=config.check_resources())  # errors before any compute
    if state.episode == 0 and saver is not None:
        blob = saver.load()
        if blob is not None:
            resume.restore_cyclic(state, blob)
            state.info["resumed_at_episode"] = state.episode
            if blob["status"] == "diverged":  # resuming cannot undo it: say so again
                raise resume.cyclic_diverged(state, blob["diverged"], None, result_of(state, {}))
    if state.episode == 0:
        est = estimate_cyclic(state)
        if est["seconds"] > LONG_RUN_S:
            print(describe_estimate(est))
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
            state.losses[0] = evaluate_documents(state)
            if probe is not None:
                probe(state)
        bar = tqdm(total=E * T, initial=state.episode, desc=desc, disable=not progress)
        while state.episode < E * T:
            epoch, k = divmod(state.episode, T)
            t1 = time.perf_counter()
            train_episode(state, int(state.schedule[epoch, k]))
            if timing:
                _sync(state.device)
            t2 = time.perf_counter()
            state.losses[state.episode + 1] = evaluate_documents(state)
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
                bad = resume.cyclic_divergence(state, epoch)
                if bad is not None:
                    bar.close()
                    raise resume.cyclic_diverged(state, bad, saver, result_of(state, clock))
                done = state.episode == E * T
                if saver is not None and (done or (epoch + 1) % saver.every == 0):
                    saver.save(resume.cyclic_payload(state), "finished" if done else "running")
            bar.update(1)
        bar.close()
    finally:
        stack.__exit__(None, None, None)
        if state.device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tf32_before
    clock["total_s"] = time.perf_counter() - t0
    return result_of(state, clock)

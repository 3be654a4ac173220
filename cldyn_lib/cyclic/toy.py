"""Yang et al.'s computational toy model of anticipatory recovery (section 4.4, appendix A.3).

Each task i has one data point ``x_i`` in R^N. A slow linear embedding ``P`` (N x N) maps it to
``P x_i``; a fast vector ``w`` is solved exactly for the current task. With an invertible
task map ``f_i``, the loss of task i is ``l_i(P, w) = 0.5 * ||P x_i - f_i(w)||^2`` and one
training step on task i is (Eqs. 4-5)::

    P <- P - lr * (P x_i - f_i(w)) x_i^T        # one gradient step on the slow weights
    w <- f_i^{-1}(P x_i)                        # the fast weights solve task i

Targets: ``"identity"`` (``f_i(w) = w``) and ``"reflect"`` (``f_i(w) = y_i - w``). In both,
``z_i = f_i^{-1}(P x_i)`` obeys ``z_i <- z_i + lr*||x_i||^2 * (z_prev - z_i)`` up to cross-talk
between the nearly orthogonal ``x_i``, so the step is stable only while
``lr * ||x_i||^2 < 2``. With ``x ~ U(-1, 1)^N``, ``E||x||^2 = N/3``: the paper's identity
setting (N = 1000, lr = 0.01) has ``lr*N/3 = 3.3`` and diverges, so :class:`ToyConfig`
refuses ``lr >= 6/dim`` and the chapter uses lr = 0.001 there (the same ``lr*N/3 = 0.33`` as
the reflect setting, N = 100, lr = 0.01).

Taught in the chapter *The toy model* (``book/toy_model.ipynb``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..config import Config, ConfigError, check_choice, check_float, check_int
from ..metrics import default_schedule

TARGETS = ("identity", "reflect")
ORDERS = ("fixed", "shuffled")


@dataclasses.dataclass(frozen=True)
class ToyConfig(Config):
    """One toy-model run. Defaults are Yang et al.'s Fig. 10b/11 setting (reflect, N=M=100)."""

    n_tasks: int = 25  #: T, number of tasks (data points)
    dim: int = 100  #: N = M, input and embedding dimension
    epochs: int = 20  #: E, passes over the fixed task order (the circle needs ~15-20)
    lr: float = 0.01  #: step size of the slow weights P
    target: str = "reflect"  #: "identity" (f_i(w) = w) or "reflect" (f_i(w) = y_i - w)
    order: str = (
        "fixed"  #: "fixed" (the paper) or "shuffled" (a new order every epoch: the null control)
    )
    seed: int = 0

    PRESETS = {
        # The toy is cheap: every scale runs the paper's setting, larger ones with more epochs.
        "ci": dict(epochs=20),
        "laptop": dict(epochs=20),
        "gpu": dict(epochs=20),
        "paper": dict(epochs=6),
    }

    def validate(self) -> None:
        check_int("n_tasks", self.n_tasks, 2, 10_000)
        check_int("dim", self.dim, 2, 20_000)
        check_int("epochs", self.epochs, 1, 10_000)
        check_choice("target", self.target, TARGETS)
        check_choice("order", self.order, ORDERS)
        check_int("seed", self.seed, 0, 2**32 - 1)
        lr_max = stable_lr_limit(self.dim)
        check_float("lr", self.lr, 0, None, lo_open=True)
        if self.lr >= lr_max:
            raise ConfigError(
                f"lr must be in (0, {lr_max:.3g}) for dim={self.dim}; got {self.lr!r}. "
                f"The P step multiplies each task's residual by 1 - lr*||x||^2, about "
                f"{1 - self.lr * self.dim / 3:.2f} here, and |.| >= 1 diverges "
                "(x ~ U(-1,1)^dim has E||x||^2 = dim/3)"
            )


def stable_lr_limit(dim: int) -> float:
    """Largest stable step size: ``lr * E||x||^2 < 2`` with ``E||x||^2 = dim/3``."""
    return 6.0 / dim


@dataclasses.dataclass
class ToyResult:
    """Output of :func:`run_toy`."""

    config: ToyConfig
    losses: np.ndarray  #: (E*T+1, T) loss matrix, row 0 before training
    schedule: np.ndarray  #: (E, T) task trained in each episode
    embeddings: (
        np.ndarray
    )  #: (E+1, T, N): z_i = f_i^{-1}(P x_i) before training and after each epoch
    kappa: float  #: mean over tasks of lr*||x_i||^2, the contraction per step (stable below 2)

    def to_arrays(self) -> dict[str, Any]:
        return {"losses": self.losses, "schedule": self.schedule, "embeddings": self.embeddings}


def run_toy(config: ToyConfig) -> ToyResult:
    """Train the toy model on tasks 1..T for ``config.epochs`` epochs.

    The order is the same every epoch (``order="fixed"``), or reshuffled every epoch with a
    seeded generator (``order="shuffled"``, the null control; see ``.schedule``).

    Evaluates every task's loss after every episode (one step on one task), using the
    current fast weights ``w``. Deterministic given ``config.seed``.
    """
    T, N, E, lr = config.n_tasks, config.dim, config.epochs, config.lr
    rng = np.random.default_rng(config.seed)
    x = rng.uniform(-1.0, 1.0, size=(T, N))
    P = rng.normal(0.0, 1.0 / N, size=(N, N))  # entries ~ N(0, 1/N^2), as in appendix A.3
    w = rng.uniform(-1.0, 1.0, size=N)
    reflect = config.target == "reflect"
    y = rng.uniform(-1.0, 1.0, size=(T, N)) if reflect else np.zeros((T, N))
    sign = -1.0 if reflect else 1.0  # f_i(w) = y_i + sign*w ; f_i^{-1}(v) = sign*(v - y_i)

    gram = x @ x.T  # lets us update all embeddings P x_j after a rank-1 step in O(T*N)
    emb = x @ P.T  # row j is P x_j

    def all_losses(w):
        return 0.5 * np.sum((emb - (y + sign * w)) ** 2, axis=1)

    schedule = default_schedule(T, E)
    if config.order == "shuffled":
        order_rng = np.random.default_rng([config.seed, 1])  # independent of the data draws
        schedule = np.stack([order_rng.permutation(T) for _ in range(E)])
    losses = np.empty((E * T + 1, T))
    losses[0] = all_losses(w)
    snapshots = [sign * (emb - y)]
    for e in range(E):
        for k, i in enumerate(schedule[e]):
            residual = emb[i] - (y[i] + sign * w)
            P -= lr * np.outer(residual, x[i])  # Eq. 4
            emb -= lr * np.outer(gram[:, i], residual)  # the same step seen by every P x_j
            w = sign * (emb[i] - y[i])  # Eq. 5
            losses[e * T + k + 1] = all_losses(w)
        snapshots.append(sign * (emb - y))
    kappa = float(lr * np.mean(np.diag(gram)))
    return ToyResult(config, losses, schedule, np.stack(snapshots), kappa)


def simulate(
    n_tasks: int = 25,
    dim: int = 100,
    epochs: int = 20,
    lr: float = 0.01,
    target: str = "reflect",
    seed: int = 0,
) -> np.ndarray:
    """The toy model's loss matrix, shape ``(epochs*n_tasks + 1, n_tasks)``.

    A shortcut for ``run_toy(ToyConfig(...)).losses``; see :func:`run_toy`.
    """
    cfg = ToyConfig(n_tasks=n_tasks, dim=dim, epochs=epochs, lr=lr, target=target, seed=seed)
    return run_toy(cfg).losses


# ---------------------------------------------------------------- the circle (Yang et al.'s Fig. 11)


def pca_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project ``points`` (n, d) on their top two principal components.

    Returns the (n, 2) coordinates and the fraction of variance each of all components
    explains (so ``explained[:2].sum()`` says how planar the cloud is).
    """
    centred = points - points.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    var = s**2
    return centred @ vt[:2].T, var / var.sum()


@dataclasses.dataclass(frozen=True)
class Circle:
    """How well 2-D points lie on a circle in task order."""

    winding: int  #: net revolutions going through tasks 1..T and back to 1 (+-1 for a circle)
    order: float  #: fraction of steps t -> t+1 that turn in the dominant direction
    radius_cv: float  #: std/mean of the distance from the centre (0 for a perfect circle)


def circle_order(coords: np.ndarray) -> Circle:
    """Measure whether points ``coords[t]`` (T, 2) go round the centre once, in order t."""
    angle = np.arctan2(coords[:, 1], coords[:, 0])
    step = np.angle(np.exp(1j * (np.roll(angle, -1) - angle)))  # t -> t+1 (T -> 1), in (-pi, pi]
    winding = int(np.rint(step.sum() / (2 * np.pi)))
    direction = np.sign(step.sum()) or 1.0
    radius = np.linalg.norm(coords, axis=1)
    order = float(np.mean(np.sign(step) == direction))
    return Circle(winding, order, float(radius.std() / radius.mean()))


# ---------------------------------------------------------------- interactive demo


#: the colour of each task map in *The toy model*'s figures (the dashboard uses the same)
TARGET_COLOURS = {"identity": "C0", "reflect": "C1"}


def toy_dashboard(
    n_tasks: int = 25,
    dim: int = 100,
    epochs: int = 20,
    lr: float = 0.01,
    target: str = "reflect",
    seed: int = 0,
):
    """One run drawn as three panels: task 1's loss, RS per epoch, the final circle.

    The slider panel of *The toy model* calls this with the reader's values.
    """
    import matplotlib.pyplot as plt

    from .. import plots
    from ..metrics import recovery_scores

    cfg = ToyConfig(n_tasks=n_tasks, dim=dim, epochs=epochs, lr=lr, target=target, seed=seed)
    res = run_toy(cfg)
    colour = TARGET_COLOURS.get(target)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), gridspec_kw={"width_ratios": [2.2, 1, 1]})
    plots.plot_loss_curve(axes[0], res.losses, doc=0, ylabel="loss of task 1", color=colour)
    axes[0].set_title(f"task 1, target={target}, T={n_tasks}, N={dim}, lr={lr:g}")
    if epochs >= 2:
        plots.plot_recovery_scores(axes[1], recovery_scores(res.losses), color=colour)
        axes[1].set_title("recovery score")
    else:
        axes[1].text(0.5, 0.5, "needs >= 2 epochs", ha="center", transform=axes[1].transAxes)
    coords, explained = pca_2d(res.embeddings[-1])
    c = circle_order(coords)
    plots.plot_circle(
        axes[2], coords, title=f"epoch {epochs}: winding {c.winding}, order {c.order:.2f}"
    )
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- why a circle


def epoch_map(n_tasks: int, kappa: float) -> np.ndarray:
    """The linear map one epoch applies to the task embeddings ``z`` (T x T).

    Ignoring cross-talk between the nearly orthogonal ``x_i``, training on task i moves
    ``z_i <- (1 - kappa) z_i + kappa z_{i-1}`` with ``kappa = lr*||x_i||^2`` (``z_0`` is the
    previous epoch's ``z_T``, held in ``w``). The epoch map is the product of these T steps.
    """
    check_int("n_tasks", n_tasks, 2, 10_000)
    check_float("kappa", kappa, 0, 2, lo_open=True, hi_open=True)
    A = np.eye(n_tasks)
    for i in range(n_tasks):
        step = np.eye(n_tasks)
        step[i, i] = 1 - kappa
        step[i, (i - 1) % n_tasks] += kappa
        A = step @ A
    return A


@dataclasses.dataclass(frozen=True)
class Modes:
    """The slowest-decaying patterns of the epoch map."""

    moduli: np.ndarray  #: moduli of the eigenvalues, largest first (the constant mode has 1)
    slowest_phase_step: float  #: mean phase advance (radians) from task t to t+1, slowest mode
    revolutions: int  #: turns of the slowest mode going once through the tasks (1 = a circle)
    ratio: (
        float  #: modulus of the next pair over the slowest pair: how fast the rest fades, per epoch
    )


def circle_modes(n_tasks: int, kappa: float) -> Modes:
    """Eigen-analysis of :func:`epoch_map`: which pattern survives longest, and how fast."""
    lam, vec = np.linalg.eig(epoch_map(n_tasks, kappa))
    order = np.argsort(-np.abs(lam), kind="stable")
    lam, vec = lam[order], vec[:, order]
    v = vec[:, 1]
    steps = np.angle(np.roll(v, -1) / v)  # t -> t+1, and T -> 1 to close the loop
    turns = int(np.rint(abs(steps.sum()) / (2 * np.pi)))
    # modes come in conjugate pairs after the constant one: 1, (2, 3), (4, 5), ...
    ratio = float(abs(lam[3]) / abs(lam[1]))
    return Modes(np.abs(lam), float(np.mean(steps)), turns, ratio)


#: seeds of the toy chapter per scale (the toy is cheap: many seeds give its bands)
TOY_SEEDS = {"ci": 5, "laptop": 20, "gpu": 20, "paper": 5}

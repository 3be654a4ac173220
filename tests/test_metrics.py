"""The loss-matrix convention, paper B's Eq. 1, shift-averaging, forgetting and BWT."""

import warnings

import numpy as np
import pytest

from cldyn_lib import metrics as m


def reference_rs(L, n, schedule=None):
    """Eq. 1 written out with explicit loops over documents (independent of the library)."""
    T = L.shape[1]
    E = (L.shape[0] - 1) // T
    S = np.tile(np.arange(T), (E, 1)) if schedule is None else schedule
    lmax, lbefore, lafter = [], [], []
    for t in range(T):
        pos_n = int(np.where(S[n - 1] == t)[0][0])
        pos_next = int(np.where(S[n] == t)[0][0])
        a = (n - 1) * T + pos_n + 1
        b = n * T + pos_next
        lmax.append(max(L[k, t] for k in range(a, b + 1)))
        lbefore.append(L[b, t])
        lafter.append(L[a, t])
    lmax, lbefore, lafter = np.mean(lmax), np.mean(lbefore), np.mean(lafter)
    return (lmax - lbefore) / (lmax - lafter)


# ---- the near misses the issue names: each must differ from Eq. 1 on some fixture


def rs_one_based(L, n):  # t counted from 1: rows shifted by one
    T = L.shape[1]
    a = [(n - 1) * T + t + 2 for t in range(T)]
    b = [min(n * T + t + 1, L.shape[0] - 1) for t in range(T)]
    return _ratio(L, a, b, a)


def rs_exclusive_end(L, n):
    T = L.shape[1]
    a = [(n - 1) * T + t + 1 for t in range(T)]
    b = [n * T + t for t in range(T)]
    lmax = np.mean([L[a[t] : b[t], t].max() for t in range(T)])
    return (lmax - np.mean(L[b, range(T)])) / (lmax - np.mean(L[a, range(T)]))


def rs_max_of_mean(L, n):
    T = L.shape[1]
    a = [(n - 1) * T + t + 1 for t in range(T)]
    b = [n * T + t for t in range(T)]
    curves = np.stack([L[a[t] : b[t] + 1, t] for t in range(T)])
    lmax = curves.mean(axis=0).max()
    return (lmax - np.mean(L[b, range(T)])) / (lmax - np.mean(L[a, range(T)]))


def rs_late_after(L, n):  # l_after taken after the (n+1)-th training
    T = L.shape[1]
    a = [(n - 1) * T + t + 1 for t in range(T)]
    b = [n * T + t for t in range(T)]
    return _ratio(L, a, b, [x + T for x in a])


def _ratio(L, a, b, after_rows):
    T = L.shape[1]
    lmax = np.mean([L[a[t] : b[t] + 1, t].max() for t in range(T)])
    return (lmax - np.mean(L[b, range(T)])) / (lmax - np.mean(L[after_rows, range(T)]))


def bumpy_fixture(T=4, E=3, seed=0):
    """Losses near 0 right after training, peaks at different episodes for each document."""
    rng = np.random.default_rng(seed)
    L = rng.uniform(1.0, 5.0, size=(E * T + 1, T))
    for e in range(E):
        for t in range(T):
            L[e * T + t + 1, t] = 0.1 * (e + 1) + 0.01 * t
    return L


@pytest.mark.parametrize("seed", range(20))
def test_recovery_score_equals_eq1_on_random_matrices(seed):
    rng = np.random.default_rng(seed)
    T, E = rng.integers(2, 9), rng.integers(2, 6)
    L = rng.uniform(0, 10, size=(E * T + 1, T))
    S = np.stack([rng.permutation(T) for _ in range(E)]) if seed % 2 else None
    for n in range(1, E):
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = reference_rs(L, n, S)
        if np.isfinite(expected):
            assert m.recovery_score(L, n, S) == pytest.approx(expected, rel=1e-12)
        else:  # every document moved from last to first: a == b, nothing can be forgotten
            with pytest.warns(RuntimeWarning, match="nothing was forgotten"):
                assert np.isnan(m.recovery_score(L, n, S))


@pytest.mark.parametrize(
    "near_miss", [rs_one_based, rs_exclusive_end, rs_max_of_mean, rs_late_after]
)
def test_each_near_miss_differs_on_some_fixture(near_miss):
    fixtures = [bumpy_fixture(seed=s) for s in range(5)]
    differs = [not np.isclose(near_miss(L, 1), m.recovery_score(L, 1), rtol=1e-6) for L in fixtures]
    assert any(differs), f"{near_miss.__name__} agrees with Eq. 1 on every fixture"


def test_hand_computed_example():
    # T=2, E=2. Document 0: trained at rows 1 and 3; document 1 at rows 2 and 4.
    L = np.array(
        [
            [5.0, 5.0],
            [1.0, 4.0],  # after training doc 0
            [3.0, 1.0],  # after doc 1
            [0.5, 2.0],  # after doc 0 again
            [2.5, 0.5],
        ]
    )
    # epoch 1, doc 0: a=1, b=2 -> max(1, 3)=3, before=3, after=1
    # doc 1: a=2, b=3 -> max(1, 2)=2, before=2, after=1
    # l_max=2.5, l_before=2.5, l_after=1 -> RS = 0
    parts = m.recovery_parts(L, 1)
    assert parts.score == pytest.approx(0.0)
    assert parts.forgotten == pytest.approx(1.5)
    # T=3, E=2: the epoch-1 windows are rows 1..3 (doc 0), 2..4 (doc 1), 3..5 (doc 2)
    L3 = np.full((7, 3), 9.0)
    L3[1:4, 0] = [0, 4, 2]  # max 4, before 2, after 0
    L3[2:5, 1] = [0, 3, 3]  # max 3, before 3, after 0
    L3[3:6, 2] = [1, 5, 1]  # max 5, before 1, after 1
    # l_max = 4, l_before = 2, l_after = 1/3  ->  RS = (4 - 2) / (4 - 1/3) = 6/11
    assert m.recovery_score(L3, 1) == pytest.approx(6 / 11)
    assert m.recovery_parts(L3, 1).forgotten == pytest.approx(11 / 3)


def test_no_forgetting_gives_nan_with_warning():
    L = np.ones((7, 3))
    with pytest.warns(RuntimeWarning, match="nothing was forgotten"):
        assert np.isnan(m.recovery_score(L, 1))


@pytest.mark.parametrize(
    "losses, schedule, epoch, match",
    [
        (np.ones((6, 3)), None, 1, "E\\*T\\+1 rows"),
        (np.ones((7,)), None, 1, "2-D"),
        (np.full((7, 3), np.nan), None, 1, "NaN or inf"),
        (np.ones((4, 3)), None, 1, "E=1 epoch has no recovery score"),
        (np.ones((7, 3)), None, 2, "epoch must be an integer in \\[1, 1\\]"),
        (np.ones((7, 3)), None, 0, "epoch must be"),
        (np.ones((7, 3)), np.zeros((2, 3), int), 1, "permutation"),
        (np.ones((7, 3)), np.tile(np.arange(3), (3, 1)), 1, "shape \\(E, T\\)"),
        (np.ones((7, 3)), np.tile(np.arange(3.0), (2, 1)), 1, "integer"),
    ],
)
def test_malformed_inputs_raise(losses, schedule, epoch, match):
    with pytest.raises(ValueError, match=match):
        m.recovery_score(losses, epoch, schedule)


def test_recovery_scores_all_epochs_and_single_epoch_run():
    L = bumpy_fixture(E=4)
    assert m.recovery_scores(L) == pytest.approx([m.recovery_score(L, n) for n in (1, 2, 3)])
    assert m.recovery_scores(bumpy_fixture(E=1)).shape == (0,)


def test_shift_averaged_loss_aligns_each_document_at_its_first_training():
    T, E = 3, 3
    L = np.arange((E * T + 1) * T, dtype=float).reshape(E * T + 1, T)
    aligned = m.aligned_losses(L)
    assert aligned.shape == (T, (E - 1) * T + 2)
    for t in range(T):
        assert aligned[t, 0] == L[t, t]  # row just before document t's first training
        assert aligned[t, 1] == L[t + 1, t]  # right after it
    assert m.shift_averaged_loss(L) == pytest.approx(aligned.mean(0))
    # with a schedule, alignment follows the schedule's first row
    S = np.array([[2, 0, 1]] * E)
    assert m.aligned_losses(L, S)[2, 0] == L[0, 2]


def test_forgetting_and_bwt_sign_conventions():
    # 2 tasks, 1 epoch: rows = before, after task 0, after task 1
    loss = np.array([[3.0, 3.0], [1.0, 2.5], [1.6, 0.4]])
    per_task = m.forgetting_per_task(loss)
    assert per_task[0] == pytest.approx(0.6)  # loss went up by 0.6 after training task 0
    assert np.isnan(per_task[1])  # the task just trained does not count
    assert m.forgetting(loss) == pytest.approx(0.6)
    assert m.backward_transfer(loss) == pytest.approx(-0.6)
    acc = np.array([[0.1, 0.1], [0.9, 0.2], [0.95, 0.8]])  # task 0 improved later: positive BWT
    assert m.backward_transfer(acc, kind="accuracy") == pytest.approx(0.05)
    assert m.forgetting(acc, kind="accuracy") == pytest.approx(-0.05)


def test_forgetting_uses_last_training_and_explicit_rows():
    T, E = 2, 2
    L = np.array([[5, 5], [1, 4], [2, 1], [0.5, 3], [0.7, 0.2]], dtype=float)
    # last training of task 0 is row 3 (0.5), final row 0.7 -> forgetting 0.2
    assert m.forgetting_per_task(L)[0] == pytest.approx(0.2)
    assert m.forgetting_per_task(L, trained_at=np.array([1, -1]))[0] == pytest.approx(-0.3)
    with pytest.raises(ValueError, match="kind"):
        m.forgetting(L, kind="accuracies")
    with pytest.raises(ValueError, match="trained_at"):
        m.forgetting(L, trained_at=np.array([1]))
    assert (T, E) == (2, 2)


def test_priming_and_spearman_by_hand():
    from cldyn_lib.metrics import priming, spearman

    T, E = 3, 2
    L = np.full((E * T + 1, T), 5.0)
    # in epoch 1, training doc 0 (row 1) lowers doc 1 by 0.5; training doc 1 (row 2) lowers doc 2 by 1
    L[1:, 1] = 4.5
    L[2:, 2] = 4.0
    assert priming(L, epoch=1) == pytest.approx(0.75)
    assert priming(L, epoch=2) == pytest.approx(0.0)
    rev = np.array([[0, 1, 2], [2, 1, 0]])
    assert priming(L, rev, epoch=2) == pytest.approx(0.0)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(
        np.corrcoef([0, 1.5, 1.5, 3], [0, 1, 2, 3])[0, 1]
    )


def test_recovery_parts_of_some_documents():
    rng = np.random.default_rng(1)
    L = rng.uniform(1, 3, size=(3 * 4 + 1, 4))
    S = np.array([[2, 0, 3, 1], [1, 3, 0, 2], [0, 1, 2, 3]])
    rows = m.after_training_rows(S)
    for t in range(4):
        L[rows[:, t], t] = 0.1  # each document is fitted right after its training
    finite = 0
    for t in range(4):
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a document trained twice in a row forgets nothing
            got, want = m.recovery_parts(L, 1, S, docs=[t]).score, _one_doc_rs(L, S, 1, t)
        assert got == pytest.approx(want, nan_ok=True)
        finite += bool(np.isfinite(want))
    assert finite >= 2
    whole = m.recovery_parts(L, 2, S)
    assert m.recovery_parts(L, 2, S, docs=range(4)).score == pytest.approx(whole.score)


def _one_doc_rs(L, S, n, t):
    rows = m.after_training_rows(S)
    a, b = rows[n - 1, t], rows[n, t] - 1
    l_max = L[a : b + 1, t].max()
    return (l_max - L[b, t]) / (l_max - L[a, t])

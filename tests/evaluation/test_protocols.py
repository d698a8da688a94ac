import numpy as np
import pytest

from llmrec.data.records import EvalCase, UserSequence
from llmrec.evaluation.protocols import rank_candidates, rank_full, sample_candidates


def _case(user: str, history: list[str], target: str) -> EvalCase:
    seq = UserSequence(user, tuple(history), tuple(float(i) for i in range(len(history))))
    return EvalCase(user, seq, target)


def test_rank_full_excludes_history_and_breaks_ties_by_index() -> None:
    scores = np.array([[5.0, 9.0, 5.0, 1.0, 5.0]])
    order, ranks = rank_full(scores.copy(), [np.array([1])], np.array([4]), depth=5)
    # item 1 excluded -> 0, 2, 4 tie at 5 (index order), then 3; item 1 unranked (-1)
    assert order.tolist() == [[0, 2, 4, 3, -1]]
    assert ranks == [2]


def test_rank_full_target_in_history_is_a_miss() -> None:
    _, ranks = rank_full(np.array([[1.0, 2.0, 3.0]]), [np.array([2])], np.array([2]), depth=3)
    assert ranks == [None]


def test_rank_candidates_orders_by_score_ties_by_position() -> None:
    candidates = np.array([[7, 3, 9, 1]])
    scores = np.array([[0.5, 0.9, 0.5, -np.inf]])
    ranked, ranks = rank_candidates(scores, candidates, np.array([9]))
    assert ranked.tolist() == [[3, 7, 9, -1]]
    assert ranks == [2]


def test_sampled_candidates_avoid_interacted_items_and_are_reproducible(tiny) -> None:  # noqa: ANN001
    cases = [_case("a", ["0", "1", "2", "3"], "4"), _case("b", ["5", "6"], "7")]
    interacted = {"a": {0, 1, 2, 3, 4}, "b": {5, 6, 7}}
    cands = sample_candidates(cases, tiny.catalog, interacted, n_negatives=19, seed=3)
    assert cands.shape == (2, 20)
    for row, seen, target in zip(cands, interacted.values(), (4, 7), strict=True):
        assert len(set(row.tolist())) == 20
        assert (row == target).sum() == 1
        assert not (set(row.tolist()) - {target}) & seen
    again = sample_candidates(cases[::-1], tiny.catalog, interacted, n_negatives=19, seed=3)
    assert (again[::-1] == cands).all()  # per-user seeding: independent of order
    other = sample_candidates(cases, tiny.catalog, interacted, n_negatives=19, seed=4)
    assert not (other == cands).all()


def test_target_position_is_spread_over_the_candidate_list(tiny) -> None:  # noqa: ANN001
    cases = [_case(f"u{i}", [], str(i % 30)) for i in range(300)]
    cands = sample_candidates(cases, tiny.catalog, {}, n_negatives=9, seed=0)
    positions = [int(np.flatnonzero(row == i % 30)[0]) for i, row in enumerate(cands)]
    counts = np.bincount(positions, minlength=10)
    assert counts.min() > 10  # ~30 each if uniform; position 0 would get all 300 if unshuffled


def test_too_few_negatives_raises(tiny) -> None:  # noqa: ANN001
    seen = set(range(25))
    with pytest.raises(ValueError, match="cannot sample 19 negatives"):
        sample_candidates([_case("a", [], "0")], tiny.catalog, {"a": seen}, n_negatives=19)

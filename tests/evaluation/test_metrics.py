import math

import pytest

from llmrec.evaluation.metrics import metrics_from_ranks


def test_metrics_match_hand_computed_values() -> None:
    # ranks 0 (top), 2, 7, miss
    m = metrics_from_ranks([0, 2, 7, None], ks=(1, 5, 10))
    assert m["HR@1"] == pytest.approx(1 / 4)
    assert m["HR@5"] == pytest.approx(2 / 4)
    assert m["HR@10"] == pytest.approx(3 / 4)
    assert m["NDCG@1"] == pytest.approx(1 / 4)
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert m["NDCG@10"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(9)) / 4)
    assert m["MRR@5"] == pytest.approx((1 + 1 / 3) / 4)
    assert m["MRR@10"] == pytest.approx((1 + 1 / 3 + 1 / 8) / 4)
    assert list(m) == [f"{n}@{k}" for n in ("HR", "NDCG", "MRR") for k in (1, 5, 10)]


def test_rank_at_cutoff_is_a_miss() -> None:
    assert metrics_from_ranks([5], ks=(5,))["HR@5"] == 0.0
    assert metrics_from_ranks([4], ks=(5,))["HR@5"] == 1.0


@pytest.mark.parametrize("ranks, ks", [([], (1,)), ([-1], (1,)), ([0], (0,))])
def test_bad_input_raises(ranks, ks) -> None:  # noqa: ANN001
    with pytest.raises(ValueError):
        metrics_from_ranks(ranks, ks)

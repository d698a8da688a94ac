"""Fusion of views: RRF and z-score fusion by hand, evidence, weight tuning, persistence."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from llmrec.data import EvalCase, UserSequence
from llmrec.recommender import Recommender
from llmrec.retrieval.fusion import FusedRetriever, FusionConfig
from llmrec.retrieval.simple import Cooccurrence, RecentPopularity

from .fakes import numbered_catalog as catalog
from .fakes import numbered_sequence as seq


class Fixed(Recommender):
    name = "fixed"

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = np.array(scores, dtype=np.float32)

    def fit(self, train, catalog, valid=None):  # noqa: ANN001
        self.catalog = catalog
        return self

    def score(self, histories: Sequence[UserSequence]) -> np.ndarray:
        return np.tile(self.scores, (len(histories), 1))

    def save(self, path):  # noqa: ANN001
        raise NotImplementedError

    @classmethod
    def load(cls, path, catalog):  # noqa: ANN001
        raise NotImplementedError


def test_rrf_by_hand() -> None:
    a = Fixed([5, 4, 3, 2, 1])  # ranks 0..4
    b = Fixed([1, 2, 3, 4, 5])  # ranks 4..0
    f = FusedRetriever(
        {"a": a, "b": b}, FusionConfig(method="rrf", rrf_k=0, depth=2, weights={"a": 1, "b": 2})
    )
    f.fit([], catalog())
    s = f.score([seq("x", [])])[0]
    # a's top 2: items 0 (1/1), 1 (1/2); b's top 2: items 4 (2/1), 3 (2/2)
    assert s.tolist() == pytest.approx([1.0, 0.5, 0.0, 1.0, 2.0])


def test_weighted_fusion_is_a_sum_of_z_scores_and_excludes_history() -> None:
    a = Fixed([0, 1, 2, 3, 4])
    f = FusedRetriever({"a": a}, FusionConfig(method="weighted", weights={"a": 2})).fit(
        [], catalog()
    )
    s = f.score([seq("x", [4])])[0]
    # history item 4 excluded; z-scores of 0,1,2,3: mean 1.5, std sqrt(1.25)
    z = (np.arange(4) - 1.5) / np.sqrt(1.25)
    assert s[:4].tolist() == pytest.approx((2 * z).tolist(), rel=1e-5)
    assert s[4] == -np.inf


def test_retrieve_keeps_each_views_evidence() -> None:
    f = FusedRetriever(
        {"a": Fixed([5, 4, 3, 2, 1]), "b": Fixed([1, 2, 3, 4, 5])},
        FusionConfig(method="rrf", depth=2),
    )
    f.fit([], catalog())
    cands = f.retrieve([seq("x", [2])], k=4)[0]
    assert [c.item_id for c in cands] == ["0", "4", "1", "3"]
    assert set(cands[0].views) == {"a"} and cands[0].views["a"].rank == 0
    assert cands[0].views["a"].score == 5.0
    assert all(c.item_id != "2" for c in cands)  # the history item is never a candidate


def test_tuning_picks_the_informative_view() -> None:
    # "good" puts each user's target first; "bad" puts it last.
    cases = [EvalCase("x", seq("x", [0]), "3"), EvalCase("y", seq("y", [1]), "3")]
    good, bad = Fixed([0, 0, 0, 9, 0]), Fixed([9, 9, 9, 0, 9])
    config = FusionConfig(tune_metric="HR@1", weights={"good": 0.25, "bad": 4})
    f = FusedRetriever({"good": good, "bad": bad}, config)
    f.fit([], catalog(), cases)
    assert f.weights["bad"] == 0.0 and f.weights["good"] > 0
    assert f.score([seq("z", [0])])[0].argmax() == 3


def test_tune_views_tunes_only_those_weights() -> None:
    # the same two views; tuning may change only "good": "bad" keeps its given 4, and "good"
    # rises until it outweighs it (all the grid's 0..4 could not; a wider grid can)
    cases = [EvalCase("x", seq("x", [0]), "3"), EvalCase("y", seq("y", [1]), "3")]
    good, bad = Fixed([0, 0, 0, 9, 0]), Fixed([9, 9, 9, 0, 9])
    config = FusionConfig(tune_metric="HR@1", weights={"good": 0.25, "bad": 4}, tune_views=["good"])
    f = FusedRetriever({"good": good, "bad": bad}, config)
    f.fit([], catalog(), cases)
    # z-scores: the target scores 2g - 8 and the rest 2 - g / 2, so only g > 4 lifts HR@1
    assert f.weights == {"good": 0.25, "bad": 4.0}
    tuned = f.tune_weights(cases, grid=(0, 1, 4, 16))
    assert tuned["weights"] == {"good": 16.0, "bad": 4.0} and tuned["HR@1"] == 1.0
    with pytest.raises(ValueError, match="tune_views given for unknown views"):
        FusedRetriever({"good": good}, FusionConfig(tune_views=["nextitem"]))


def test_save_and_load_round_trip(tmp_path) -> None:  # noqa: ANN001
    train = [seq("a", [0, 1, 2, 3]), seq("b", [2, 3, 4]), seq("c", [1, 2, 4])]
    valid = [EvalCase("a", seq("a", [0, 1]), "2")]
    f = FusedRetriever({"cooc": Cooccurrence(window=2), "recent": RecentPopularity()})
    f.fit(train, catalog(), valid)
    f.save(tmp_path / "fused")
    again = FusedRetriever.load(tmp_path / "fused", catalog())
    assert again.weights == f.weights
    h = [seq("q", [1])]
    assert np.array_equal(f.score(h), again.score(h))


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="unknown views"):
        FusedRetriever({"a": Fixed([1])}, FusionConfig(weights={"b": 1.0}))
    with pytest.raises(ValueError, match="at least one view"):
        FusedRetriever({})
    with pytest.raises(ValueError):
        FusionConfig(method="max")


class QueryView(Fixed):
    """Answers a query by putting item 4 first; by history, item 0 first."""

    def score_with_query(self, histories, queries):  # noqa: ANN001
        rows = [[0, 0, 0, 0, 9] if q else [9, 0, 0, 0, 0] for q in queries]
        return np.array(rows, dtype=np.float32)


def test_a_query_overrides_a_small_tuned_weight() -> None:
    f = FusedRetriever(
        {"q": QueryView([9, 0, 0, 0, 0]), "pop": Fixed([0, 5, 4, 3, 2])},
        FusionConfig(weights={"q": 0.0, "pop": 1.0}, query_boost=4.0),
    )
    f.fit([], catalog())
    h = [seq("x", []), seq("y", [])]
    by_query = f.retrieve(h, k=1, queries=["something", None])
    assert by_query[0][0].item_id == "4"  # the query view decides for the user who asked
    assert by_query[1][0].item_id == "1"  # weight 0 without a query: popularity decides


class Partial(Fixed):
    """Knows only items 0-2 (as an ID model fitted without items 3 and 4 would)."""

    def known_items(self) -> np.ndarray:
        return np.array([True, True, True, False, False])


def test_views_abstain_on_items_they_never_saw() -> None:
    ids = Partial([3, 2, 1, -50, -50])  # untrained items scored far below the rest
    text = Fixed([0, 0, 0, 0, 1])  # finds the cold item 4
    config = FusionConfig(weights={"ids": 1, "text": 1}, cold_slots=0.0)
    f = FusedRetriever({"ids": ids, "text": text}, config)
    f.fit([], catalog())
    s = f.score([seq("x", [])])[0]
    z = (np.array([3, 2, 1]) - 2) / np.sqrt(2 / 3)  # the id view's z-scores over items it knows
    text_z = (np.array([0, 0, 0, 0, 1]) - 0.2) / 0.4
    assert s.tolist() == pytest.approx([*(z + text_z[:3]), text_z[3], text_z[4]], rel=1e-5)
    assert s[4] > s[1]  # the cold item is not buried by the view that never saw it


def test_cold_items_get_reserved_slots() -> None:
    ids = Partial([5, 4, 3, 0, 0])  # knows 0-2 only: items 3 and 4 are cold
    text = Fixed([0, 0, 0, 1, 2])  # rates the cold items 4, then 3, above average
    config = FusionConfig(weights={"ids": 10, "text": 1}, cold_slots=0.5)
    f = FusedRetriever({"ids": ids, "text": text}, config).fit([], catalog())
    ranked = [c.item_id for c in f.retrieve([seq("x", [])], k=5)[0]]
    assert ranked == ["0", "4", "1", "3", "2"]  # every 2nd position: the best cold item
    no_slots = FusedRetriever(
        {"ids": ids, "text": text}, FusionConfig(weights={"ids": 10, "text": 1}, cold_slots=0.0)
    )
    no_slots.fit([], catalog())
    # without slots the order is the fused score's: ids abstain on 3 and 4, so the text view's
    # above-average opinion of them beats the warm items the ID view rates below its average
    assert [c.item_id for c in no_slots.retrieve([seq("x", [])], k=5)[0]] == [
        "0",
        "4",
        "3",
        "1",
        "2",
    ]


def test_registry_builds_and_reloads_a_fused_retriever_by_name(tmp_path) -> None:  # noqa: ANN001
    from llmrec.retrieval import registry

    model = registry.create(
        "fused", {"method": "rrf", "tune": False}, views=["cooc", "pop"], view_settings={"cooc": {}}
    )
    assert isinstance(model, FusedRetriever) and model.config.method.value == "rrf"
    kinds = [type(v).__name__ for v in model.views.values()]
    assert kinds == ["Cooccurrence", "PopularityRecommender"]
    train = [seq("a", [0, 1, 2]), seq("b", [1, 2, 3])]
    model.fit(train, catalog())
    loaded = registry.view_class("fused").load(model.save(tmp_path / "fused"), catalog())
    assert loaded.weights == model.weights and list(loaded.views) == ["cooc", "pop"]
    with pytest.raises(TypeError):  # unknown fusion settings fail as before
        registry.create("fused", {"methd": "rrf"}, views=["pop"])
    with pytest.raises(ValueError, match="not in"):
        registry.create("fused", views=["pop"], view_settings={"cooc": {}})

"""The two-stage pipeline as a :class:`Recommender`: retrieve candidates, rank them with the LLM.

- Full ranking: the retriever scores the whole catalogue, the user's history items are removed,
  its top ``num_candidates`` go to the LLM in one prompt, and every other item gets ``-inf`` (a
  target the retriever missed counts as a miss).
- Sampled protocol: the given candidates go to the LLM directly.

The final score of a candidate is :func:`llmrec.ranking.fuse.fuse`: the LLM's log-probability of
the candidate's label plus ``weight`` times the retriever's rank of it, standardised over the list.
``weight`` 0 is the pure LLM ranking; the weight is tuned on validation (:meth:`LLMRanker.tune`).
LLM scores are cached per (user, history length, candidate list), so both rankings of the same
cases cost one LLM pass.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.data.dataset import RecDataset
from llmrec.data.records import EvalCase, UserSequence
from llmrec.evaluation.harness import EvalConfig, Protocol, evaluate
from llmrec.evaluation.metrics import metrics_from_ranks
from llmrec.prompts.builder import PromptBuilder
from llmrec.ranking.backends.base import RankModel, item_scores
from llmrec.ranking.fuse import fuse, rank_scores
from llmrec.ranking.tuning import DEFAULT_WEIGHT_GRID
from llmrec.recommender import Recommender


@dataclass
class RankerConfig:
    num_candidates: int = 20
    #: Weight of the retriever's standardised score next to the LLM's log-probability.
    fusion_weight: float = 0.0
    tune_metric: str = "NDCG@10"


def candidates_from_scores(
    scores: np.ndarray, histories: Sequence[UserSequence], catalog: Catalog, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` catalogue indices per row (history excluded) and their retriever scores."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    for row, history in enumerate(histories):
        seen = [catalog.index(i) for i in history.item_ids if i in catalog]
        scores[row, seen] = -np.inf
    scores[~np.isfinite(scores)] = -np.inf
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return top, np.take_along_axis(scores, top, axis=1)


class LLMRanker(Recommender):
    """Retriever + prompt builder + LLM scorer, scored by the evaluation harness like any model."""

    name: ClassVar[str] = "llm"

    def __init__(
        self,
        retriever: Recommender,
        scorer: RankModel,
        config: RankerConfig | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__()
        self.retriever = retriever
        self.scorer = scorer
        self.config = config or RankerConfig()
        self.progress = progress
        self.catalog = retriever.catalog
        self._cache: dict[tuple, np.ndarray] = {}

    @property
    def builder(self) -> PromptBuilder:
        return self.scorer.builder

    def fit(self, train, catalog, valid=None) -> LLMRanker:
        """The retriever and adapter are trained elsewhere; with ``valid``, tune the weight."""
        if self.retriever.catalog is None:
            self.retriever.fit(train, catalog, valid)
        self.catalog = catalog
        if valid:
            self.tune(valid)
        return self

    # ------------------------------------------------------------------ scoring
    def llm_scores(self, histories: Sequence[UserSequence], candidates: np.ndarray) -> np.ndarray:
        """The model's scores of ``candidates`` (n, C) after each history, aligned with them
        (:func:`~llmrec.ranking.backends.base.item_scores`: label log-probabilities of a
        listwise prompt, or a next-item model's item scores)."""
        catalog = self._require_fitted()
        out = np.zeros(candidates.shape, dtype=np.float64)
        todo, keys = [], []
        for row, (history, cands) in enumerate(zip(histories, candidates, strict=True)):
            ids = tuple(catalog.ids[int(i)] for i in cands)
            # the whole history: two ad-hoc histories may share a length and a last item
            key = (history.user_id, history.item_ids, ids)
            if key in self._cache:
                out[row] = self._cache[key]
                continue
            todo.append(row)
            keys.append(key)
        scored = item_scores(
            self.scorer, [histories[row] for row in todo], [k[2] for k in keys], self.progress
        )
        for row, key, aligned in zip(todo, keys, scored, strict=True):
            self._cache[key] = aligned
            out[row] = aligned
        return out

    def scored_lists(self) -> list[tuple[str, tuple[str, ...], tuple[str, ...], np.ndarray]]:
        """Every (user, history item ids, candidate ids, LLM scores) scored so far, candidates in
        the order they were handed over (the retriever's, for the lists this ranker builds)."""
        return [(user, hist, ids, scores) for (user, hist, ids), scores in self._cache.items()]

    def combine(self, llm: np.ndarray, retrieval: np.ndarray, weight: float) -> np.ndarray:
        return fuse(llm, retrieval, weight)

    def retrieve(self, histories: Sequence[UserSequence]) -> tuple[np.ndarray, np.ndarray]:
        catalog = self._require_fitted()
        full = self.retriever.score(histories)
        top, scores = candidates_from_scores(full, histories, catalog, self.config.num_candidates)
        return top, rank_scores(scores)

    def score(self, histories: Sequence[UserSequence]) -> np.ndarray:
        catalog = self._require_fitted()
        cands, ret = self.retrieve(histories)
        final = self._final(histories, cands, ret, self.config.fusion_weight)
        out = np.full((len(histories), len(catalog)), -np.inf, dtype=np.float64)
        # retrieved items the retriever could not score at all stay unranked
        final = np.where(np.isfinite(ret), final, -np.inf)
        np.put_along_axis(out, cands, final, axis=1)
        return out

    def score_candidates(self, histories: Sequence[UserSequence], candidates: np.ndarray):
        candidates = np.asarray(candidates, dtype=np.int64)
        ret = rank_scores(self.retriever.score_candidates(histories, candidates))
        return self._final(histories, candidates, ret, self.config.fusion_weight)

    def _final(self, histories, cands, ret, weight: float) -> np.ndarray:
        if weight == float("inf"):  # the retriever's order alone: no LLM pass needed
            return fuse(np.zeros_like(ret), ret, weight)
        # the prompt lists candidates with their retrieval rank when evidence is on, so hand them
        # over in the retriever's order (a no-op for retrieved lists) and map the scores back
        order = np.argsort(-np.where(np.isfinite(ret), ret, -1e300), axis=1, kind="stable")
        sorted_llm = self.llm_scores(histories, np.take_along_axis(cands, order, axis=1))
        llm = np.empty_like(sorted_llm)
        np.put_along_axis(llm, order, sorted_llm, axis=1)
        return fuse(llm, ret, weight)

    # ------------------------------------------------------------------ tuning
    def tune(
        self,
        cases: Sequence[EvalCase],
        grid: Sequence[float] = DEFAULT_WEIGHT_GRID,
        *,
        dataset: RecDataset | None = None,
        protocol: EvalConfig | None = None,
    ) -> dict[str, float]:
        """Pick the fusion weight with the best ``tune_metric`` on ``cases`` and set it.

        By default the cases are ranked as in full ranking (the retriever's top
        ``num_candidates``). With a sampled ``protocol`` (and the ``dataset`` its negatives come
        from) they are ranked as that protocol ranks them: target + random negatives, lists on
        which the retriever's order tells a different amount than on its own top-k, so the best
        weight differs. One LLM pass either way: the scores are cached across weights.
        """
        if protocol is not None and Protocol(protocol.protocol) is not Protocol.FULL:
            if dataset is None:
                raise ValueError(
                    "tuning under the sampled protocol needs the dataset: its negatives are items "
                    "the user never rated"
                )
            return self._tune_with_harness(cases, grid, dataset, protocol)
        catalog = self._require_fitted()
        histories = [c.history for c in cases]
        cands, ret = self.retrieve(histories)
        llm = self.llm_scores(histories, cands)
        targets = catalog.indices(c.target for c in cases)
        quality = {}
        for weight in grid:
            final = self.combine(llm, ret, weight)
            final = np.where(np.isfinite(ret), final, -np.inf)
            ranks = []
            for row, t in enumerate(targets):
                hit = np.flatnonzero(cands[row] == t)
                if hit.size == 0 or not np.isfinite(final[row, hit[0]]):
                    ranks.append(None)
                    continue
                s = final[row]
                ranks.append(int((s > s[hit[0]]).sum()))
            quality[weight] = metrics_from_ranks(ranks)[self.config.tune_metric]
        return self._pick(grid, quality)

    def _tune_with_harness(self, cases, grid, dataset, protocol) -> dict[str, float]:  # noqa: ANN001
        metric = self.config.tune_metric
        k = int(metric.split("@")[1])
        config = replace(protocol, ks=(*protocol.ks, k))
        quality = {}
        for weight in grid:
            self.config.fusion_weight = float(weight)
            result = evaluate(self, dataset, cases, config, part="valid", progress=False)
            quality[weight] = result.metrics[metric]
        return self._pick(grid, quality)

    def _pick(self, grid: Sequence[float], quality: dict[float, float]) -> dict[str, float]:
        # ties go to the smaller weight: the LLM keeps the say validation could not take from it
        best = max(grid, key=lambda w: (quality[w], -w))
        self.config.fusion_weight = float(best)
        return {str(w): q for w, q in quality.items()}

    def save(self, path: str | os.PathLike[str]) -> Path:
        raise NotImplementedError(
            "an LLMRanker is assembled from a saved retriever and a saved adapter; save those"
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], catalog: Catalog) -> LLMRanker:
        raise NotImplementedError("assemble an LLMRanker with llmrec.ranking.load_pipeline")

"""The assembled recommender that the CLI and the service call: retrieve, rank, explain.

:func:`load_pipeline` puts together a saved retriever (``llmrec retrieve build``), a base LLM and
optionally a saved adapter (``llmrec finetune``), with the prompt settings the adapter was trained
with. :meth:`RecPipeline.recommend` returns :class:`Recommendation` records: catalogue items only,
each with its final, LLM and retrieval scores, the retrieval views that proposed it, and a reason
that passed the grounding check (a generated one, else the template reason built from facts).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.data.records import UserSequence
from llmrec.prompts.builder import PromptBuilder, PromptConfig, stable_seed
from llmrec.ranking.fuse import fuse, retrieval_order_scores, standardise
from llmrec.ranking.pipeline import LLMRanker, RankerConfig
from llmrec.ranking.reasons import Grounder, ReasonFacts, ReasonMode
from llmrec.ranking.scorer import LLMScorer
from llmrec.ranking.settings import read_ranker_settings

logger = logging.getLogger(__name__)

REASON_MODES = tuple(ReasonMode.values())


@dataclass
class Reason:
    text: str
    #: "llm" (generated and grounded) or "template" (built from facts)
    source: str
    rejected: list[str] = field(default_factory=list)


@dataclass
class Recommendation:
    item_id: str
    title: str
    year: int | None
    score: float
    llm_score: float
    retrieval_score: float
    views: dict[str, dict[str, float]]
    reason: Reason | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "item_id": self.item_id,
            "title": self.title,
            "year": self.year,
            "score": round(self.score, 6),
            "llm_score": round(self.llm_score, 6),
            "retrieval_score": round(self.retrieval_score, 6),
            "views": self.views,
        }
        if self.reason is not None:
            out["reason"] = self.reason.text
            out["reason_source"] = self.reason.source
        return out


class ReasonGenerator:
    """Generate a reason per recommended item; show it only if it passes the grounding check.

    A rejected reason is regenerated once with sampling; if that fails too, the template reason
    (true by construction) is shown instead. Nothing that names an item outside the user's history
    and the recommendation itself reaches the user.
    """

    def __init__(
        self,
        scorer: LLMScorer,
        facts: ReasonFacts,
        grounder: Grounder,
        max_new_tokens: int = 40,
        attempts: int = 2,
    ) -> None:
        self.scorer = scorer
        self.facts = facts
        self.grounder = grounder
        self.max_new_tokens = max_new_tokens
        self.attempts = attempts

    def template(self, history: UserSequence, item_ids: Sequence[str]) -> list[Reason]:
        return [Reason(self.facts.silver(history, i), "template") for i in item_ids]

    def generate(self, history: UserSequence, item_ids: Sequence[str]) -> list[Reason]:
        builder = self.scorer.builder
        prompts = []
        for item_id in item_ids:
            facts = [f.text for f in self.facts.facts(history, item_id)]
            prompts.append(builder.reason(history, item_id, facts).text)
        out: list[Reason | None] = [None] * len(item_ids)
        rejected: list[list[str]] = [[] for _ in item_ids]
        todo = list(range(len(item_ids)))
        for attempt in range(self.attempts):
            if not todo:
                break
            batch = [prompts[i] for i in todo]
            seed = stable_seed("reason", *batch) % 2**31 if attempt else None
            texts = self.scorer.generate(batch, self.max_new_tokens, sample_seed=seed)
            still = []
            for i, text in zip(todo, texts, strict=True):
                text = first_sentence(text)
                ok = text and self.grounder.check(text, history, item_ids[i])
                # a reason must point at something true of this user: a history item or a
                # genre the item shares with the history
                if ok and self.grounder.cites(text, history, item_ids[i]):
                    out[i] = Reason(text, "llm", rejected[i])
                else:
                    rejected[i].append(text)
                    still.append(i)
            todo = still
        for i in todo:
            out[i] = Reason(self.facts.silver(history, item_ids[i]), "template", rejected[i])
        return [r for r in out if r is not None]


def first_sentence(text: str, max_chars: int = 300) -> str:
    """The first sentence of a generation, cut at ``max_chars``."""
    text = " ".join(text.split())
    for end in (". ", "! ", "? "):
        cut = text.find(end)
        if 0 < cut:
            text = text[: cut + 1]
            break
    return text[:max_chars].strip()


class RecPipeline:
    """Retriever + LLM ranker + reasons, for one catalogue."""

    def __init__(
        self,
        retriever: Any,
        ranker: LLMRanker,
        reasons: ReasonGenerator,
        catalog: Catalog,
        adapter: str | None = None,
    ) -> None:
        self.retriever = retriever
        self.ranker = ranker
        self.reasons = reasons
        self.catalog = catalog
        self.adapter = adapter

    def candidates(self, history: UserSequence, query: str | None = None) -> list[Any]:
        k = self.ranker.config.num_candidates
        if hasattr(self.retriever, "retrieve"):
            return self.retriever.retrieve([history], k=k, queries=[query])[0]
        from llmrec.ranking.pipeline import candidates_from_scores
        from llmrec.retrieval.candidates import Candidate

        top, scores = candidates_from_scores(
            self.retriever.score([history]), [history], self.catalog, k
        )
        return [
            Candidate(self.catalog.ids[int(i)], float(s))
            for i, s in zip(top[0], scores[0], strict=True)
            if np.isfinite(s)
        ]

    def recommend(
        self,
        history: UserSequence,
        k: int = 5,
        query: str | None = None,
        reasons: str = "generate",
    ) -> list[Recommendation]:
        if reasons not in REASON_MODES:
            raise ValueError(f"reasons must be one of {REASON_MODES}, got {reasons!r}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        cands = self.candidates(history, query)
        if not cands:
            return []
        idx = self.catalog.indices(c.item_id for c in cands)[None, :]
        llm = self.ranker.llm_scores([history], idx)[0]
        # the retriever returns candidates best first: fuse by rank, as evaluation does
        ret = retrieval_order_scores(len(cands))
        final = fuse(llm[None, :], ret, self.ranker.config.fusion_weight)[0]
        order = np.argsort(-final, kind="stable")[:k]
        ret_z = standardise(ret)[0]
        out = []
        for j in order:
            cand = cands[int(j)]
            item = self.catalog.item(cand.item_id)
            out.append(
                Recommendation(
                    item_id=cand.item_id,
                    title=item.title,
                    year=item.year,
                    score=float(final[j]),
                    llm_score=float(llm[j]),
                    retrieval_score=float(ret_z[j]),
                    views={
                        name: {"rank": ev.rank + 1, "score": round(ev.score, 6)}
                        for name, ev in getattr(cand, "views", {}).items()
                    },
                )
            )
        if reasons != "none":
            ids = [r.item_id for r in out]
            if reasons == "generate":
                texts = self.reasons.generate(history, ids)
            else:
                texts = self.reasons.template(history, ids)
            for rec, reason in zip(out, texts, strict=True):
                rec.reason = reason
        return out


def load_pipeline(
    retriever_dir: str | os.PathLike[str],
    dataset: Any,
    adapter_dir: str | os.PathLike[str] | None = None,
    base_model: str | None = None,
    fusion_weight: float | None = None,
    num_candidates: int = 20,
    prompt: PromptConfig | None = None,
    device: str = "auto",
    batch_size: int = 8,
) -> RecPipeline:
    """Assemble the pipeline from saved parts. Without an adapter the base model ranks zero-shot."""
    from llmrec.models.adapters import load_adapters, read_adapter_record, writes_text
    from llmrec.models.loader import load_model
    from llmrec.retrieval.saved import load_retriever

    catalog = dataset.catalog
    retriever = load_retriever(retriever_dir, catalog)
    quant = None
    if adapter_dir is not None:
        record = read_adapter_record(adapter_dir)
        if record.catalog_fingerprint and record.catalog_fingerprint != catalog.fingerprint():
            raise ValueError(
                f"adapter {adapter_dir} was trained on another catalogue; fine-tune it on this one"
            )
        base_model = base_model or record.base_model
        prompt = prompt or PromptConfig.from_dict(record.prompt)
        if record.method == "qlora":
            from llmrec.models.adapters import AdapterConfig

            quant = AdapterConfig.from_dict(record.adapter).quantization
    loaded = load_model(base_model, device=device, quantization=quant)
    model = loaded.model
    if adapter_dir is not None:
        model = load_adapters(model, {Path(adapter_dir).name: adapter_dir})
    builder = PromptBuilder(catalog, loaded.tokenizer, prompt or PromptConfig(), dataset.profiles())
    # an adapter trained only to rank writes its reasons with the base model
    writes = writes_text(adapter_dir) if adapter_dir is not None else True
    scorer = LLMScorer(
        model, loaded.tokenizer, builder, batch_size=batch_size, write_with_adapter=writes
    )
    settings = read_ranker_settings(adapter_dir)
    weight = fusion_weight if fusion_weight is not None else settings.fusion_weight
    ranker = LLMRanker(retriever, scorer, RankerConfig(num_candidates, float(weight)))
    embeddings = None
    text_view = getattr(retriever, "views", {}).get("text")
    if text_view is not None and getattr(text_view, "item_embeddings", None) is not None:
        embeddings = np.asarray(text_view.item_embeddings)
    reasons = ReasonGenerator(scorer, ReasonFacts(catalog, embeddings), Grounder(catalog))
    return RecPipeline(
        retriever, ranker, reasons, catalog, str(adapter_dir) if adapter_dir else None
    )

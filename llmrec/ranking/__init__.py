"""LLM ranking: one-pass scoring of candidate labels, fusion with retrieval, grounded reasons."""

from llmrec.ranking.pipeline import LLMRanker, RankerConfig
from llmrec.ranking.reasons import Grounder, ReasonFacts
from llmrec.ranking.recommend import Recommendation, RecPipeline, load_pipeline
from llmrec.ranking.scorer import LLMScorer, parse_ranking

__all__ = [
    "Grounder",
    "LLMRanker",
    "LLMScorer",
    "RankerConfig",
    "ReasonFacts",
    "RecPipeline",
    "Recommendation",
    "load_pipeline",
    "parse_ranking",
]

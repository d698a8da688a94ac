"""LLM ranking: the one path from a request to a ranked answer (retrieve, filter, rank on a model
backend, fuse with retrieval, explain), used by the CLI, evaluation and the service."""

from llmrec.ranking.adapter_folder import AdapterFolder, open_adapter_folder
from llmrec.ranking.backends import BackendConfig, ModelInfo, RankModel, make_backend
from llmrec.ranking.fuse import fuse
from llmrec.ranking.pipeline import LLMRanker, RankerConfig
from llmrec.ranking.reasons import Grounder, ReasonFacts, ReasonMode
from llmrec.ranking.recommend import ItemFilter, Recommendation, RecPipeline, load_pipeline
from llmrec.ranking.scorer import LLMScorer, parse_ranking

__all__ = [
    "AdapterFolder",
    "BackendConfig",
    "Grounder",
    "ItemFilter",
    "LLMRanker",
    "LLMScorer",
    "ModelInfo",
    "RankModel",
    "RankerConfig",
    "ReasonFacts",
    "ReasonMode",
    "RecPipeline",
    "Recommendation",
    "fuse",
    "load_pipeline",
    "make_backend",
    "open_adapter_folder",
    "parse_ranking",
]

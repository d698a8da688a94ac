"""Evaluation harness: full-ranking and sampled-candidate protocols, metrics, rankings files."""

from llmrec.evaluation.harness import EvalConfig, EvalResult, evaluate, format_table
from llmrec.evaluation.metrics import DEFAULT_KS, metrics_from_ranks
from llmrec.evaluation.protocols import Protocol

__all__ = [
    "DEFAULT_KS",
    "EvalConfig",
    "EvalResult",
    "Protocol",
    "evaluate",
    "format_table",
    "metrics_from_ranks",
]

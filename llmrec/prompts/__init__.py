"""Prompts: versioned templates and the one builder that training, evaluation and serving share.

This layer needs no torch; a tokenizer is optional (for exact token budgets and chat templates).
"""

from llmrec.prompts.builder import (
    LABELS,
    MAX_CANDIDATES,
    PromptBuilder,
    PromptConfig,
    RankPrompt,
    TextPrompt,
    label_token_ids,
    sanitize_text,
)
from llmrec.prompts.templates import PromptTemplate, list_templates, load_template

__all__ = [
    "LABELS",
    "MAX_CANDIDATES",
    "PromptBuilder",
    "PromptConfig",
    "PromptTemplate",
    "RankPrompt",
    "TextPrompt",
    "label_token_ids",
    "list_templates",
    "load_template",
    "sanitize_text",
]

"""Fine-tuning: supervised ranking (and reason) examples -> a PEFT adapter on disk.

Recipes live in the repository's ``finetune/`` folder; ``llmrec finetune`` runs them.
"""

from llmrec.finetune.examples import (
    ExampleConfig,
    RankRow,
    ReasonRow,
    TrainingRow,
    build_examples,
    candidate_lists,
    training_cases,
)
from llmrec.finetune.recipe import Recipe, TrainingConfig, load_recipe
from llmrec.finetune.summary import TrainingSummary, read_training_summary

__all__ = [
    "ExampleConfig",
    "RankRow",
    "ReasonRow",
    "Recipe",
    "TrainingConfig",
    "TrainingRow",
    "TrainingSummary",
    "build_examples",
    "candidate_lists",
    "load_recipe",
    "read_training_summary",
    "training_cases",
]

"""Fine-tuning: supervised ranking (and reason) examples -> a PEFT adapter on disk.

Recipes live in the repository's ``finetune/`` folder; ``llmrec finetune`` runs them.
"""

from llmrec.finetune.examples import ExampleConfig, build_examples, candidate_lists, training_cases
from llmrec.finetune.recipe import Recipe, TrainingConfig, load_recipe

__all__ = [
    "ExampleConfig",
    "Recipe",
    "TrainingConfig",
    "build_examples",
    "candidate_lists",
    "load_recipe",
    "training_cases",
]

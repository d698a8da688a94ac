"""The next-item LLM: the user's history enters the LLM as item tokens, and the hidden state at
every position scores the whole catalogue.

Data flows through four modules, one step each:

- :mod:`~llmrec.nextitem.config` - :class:`NextItemConfig`, every setting of the model;
- :mod:`~llmrec.nextitem.features` - what the model reads: the text vector of every item
  (computed once by the base LLM from the item's rendered text), and per event the item, the
  time gap since the previous event, the rating, the time of the event and the behaviour type,
  cut into left-padded windows;
- :mod:`~llmrec.nextitem.network` - :class:`ItemTokenLM`: item vectors (text + ID + views) in, the
  LLM's first layers (adapted with LoRA, AdaLoRA, prefix tuning or QLoRA), item vectors out;
  cross-entropy at every position over the catalogue (or a sampled softmax with logQ
  correction for large catalogues);
- :mod:`~llmrec.nextitem.recommender` - :class:`NextItemRecommender`, the
  :class:`~llmrec.recommender.Recommender` that evaluation, fusion and ranking use: one forward
  pass per user gives a score for every item; save and load.

Training lives in :mod:`llmrec.finetune.nextitem` (HF Trainer; recipes
``finetune/nextitem-*.yaml``).
torch, transformers and peft are imported inside these modules, never by ``import llmrec``.
"""

from llmrec.nextitem.config import NextItemConfig

__all__ = ["NextItemConfig"]

"""The next-item LLM as a :class:`~llmrec.recommender.Recommender`: scores, save and load.

One forward pass per user (the last ``max_len`` events) gives a score for every catalogue item, so
the model serves the full-ranking protocol alone, is a view the fused retriever can read, and ranks
any candidate list (:meth:`score_candidates`).

A saved model is a folder::

    model.json          the llmrec record: base model (by its portable identity,
                        :mod:`llmrec.models.identity`), layers kept, NextItemConfig, adapter
                        settings, event vocabulary, catalogue fingerprint, training facts
    adapter/            the PEFT adapter in peft's standard layout (absent for a frozen base)
    head.safetensors    item tower and scoring head (ID and view embeddings, projections, text
                        vectors, biases, which items were seen in training)

Loading rebuilds the base model named in the record (found on this machine by its Hub id when the
folder it was trained from is not here), cuts it to the same layers, attaches the
adapter and the head; the catalogue must be the one it was trained on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.data.records import EvalCase, UserSequence
from llmrec.io import atomic_dir
from llmrec.nextitem.config import NextItemConfig
from llmrec.nextitem.features import EventVocab, encode_events, left_pad, shuffle_ties
from llmrec.recommender import Recommender, read_model_meta, write_model_meta

logger = logging.getLogger(__name__)

MODEL_NAME = "nextitem-llm"
HEAD_FILE = "head.safetensors"
ADAPTER_DIR = "adapter"
#: Users scored per forward pass.
SCORE_BATCH = 64


class NextItemRecommender(Recommender):
    """A trained next-item LLM (see :mod:`llmrec.nextitem`). Built by
    :func:`llmrec.finetune.nextitem.train_nextitem` or :meth:`load`."""

    name: ClassVar[str] = MODEL_NAME

    def __init__(
        self,
        net: Any,
        catalog: Catalog,
        vocab: EventVocab,
        config: NextItemConfig,
        record: dict[str, Any],
    ) -> None:
        super().__init__()
        self.net = net
        self.catalog = catalog
        self.vocab = vocab
        self.config = config
        #: base_model, dtype, adapter (settings), method, training facts ...
        self.record = dict(record)

    # ------------------------------------------------------------------ Recommender
    def fit(
        self,
        train: Sequence[UserSequence],
        catalog: Catalog,
        valid: Sequence[EvalCase] | None = None,
    ) -> NextItemRecommender:
        raise NotImplementedError(
            "the next-item LLM is trained by `llmrec finetune --recipe nextitem-lora` "
            "(llmrec.finetune.nextitem.train_nextitem); load the result with NextItemRecommender"
            ".load(folder, catalog)"
        )

    def known_items(self) -> np.ndarray | None:
        """With text vectors every item is scored from its text (cold items included): None.
        Without, only items seen in training."""
        if self.config.text:
            return None
        return self.net.known.cpu().numpy().copy()

    def encode(self, histories: Sequence[UserSequence]) -> list[np.ndarray]:
        """Each history's last ``max_len`` events, encoded (see :func:`encode_events`)."""
        catalog = self._require_fitted()
        return [
            encode_events(h.tail(self.config.max_len) if len(h) else h, catalog, self.vocab)
            for h in histories
        ]

    def score(self, histories: Sequence[UserSequence]) -> np.ndarray:
        """Scores (n, N) float32; an empty history gets the training popularity counts."""
        return self.score_events(self.encode(histories))

    def score_events(self, encoded: Sequence[np.ndarray]) -> np.ndarray:
        """Scores (n, N) float32 for encoded event arrays (see :meth:`encode`). With
        ``tie_passes`` P > 1, the mean log-softmax over P orders of each history: as read, and
        P - 1 with its runs of near-simultaneous events shuffled (:func:`shuffle_ties`, seeded
        by the pass, so a history always gets the same scores)."""
        passes = self.config.tie_passes
        if passes <= 1:
            return self._score_once(encoded)
        variants = [
            events if p == 0 else shuffle_ties(events, np.random.default_rng(p))
            for events in encoded
            for p in range(passes)
        ]
        scores = self._score_once(variants)  # (n * P, N)
        empty = np.array([len(e) == 0 for e in encoded], dtype=bool)  # (n,)
        out = log_softmax(scores).reshape(len(encoded), passes, -1).mean(axis=1)  # (n, N)
        out[empty] = scores.reshape(len(encoded), passes, -1)[empty, 0]
        return out.astype(np.float32)

    def _score_once(self, encoded: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        net = self.net
        n_items = net.n_items
        out = np.empty((len(encoded), n_items), dtype=np.float32)  # (n, N)
        popularity = net.item_counts.float().cpu().numpy()  # (N,)
        device = net.known.device
        was_training = net.training
        net.eval()
        try:
            for begin in range(0, len(encoded), SCORE_BATCH):
                batch = list(encoded[begin : begin + SCORE_BATCH])
                width = max([len(e) for e in batch] + [1])
                events = torch.from_numpy(left_pad(batch, width)).to(device)  # (B, W, 5)
                scores = net.score_last(events).float().cpu().numpy()  # (B, N)
                empty = np.array([len(e) == 0 for e in batch])  # (B,)
                scores[empty] = popularity
                out[begin : begin + len(batch)] = scores
        finally:
            net.train(was_training)
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the record, the PEFT adapter and the head (atomically)."""
        from safetensors.torch import save_file

        catalog = self._require_fitted()
        with atomic_dir(path) as tmp:
            backbone = self.net.backbone
            if hasattr(backbone, "peft_config"):
                backbone.save_pretrained(str(tmp / ADAPTER_DIR))
            save_file(head_state(self.net), str(tmp / HEAD_FILE))
            meta = {
                **self.record,
                "nextitem": self.config.to_dict(),
                "vocab": self.vocab.to_dict(),
                "n_items": len(catalog),
            }
            write_model_meta(tmp, self.name, catalog, meta)
        return Path(path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        catalog: Catalog,
        *,
        base_model: str | None = None,
        dtype: str | None = None,
        device: str = "auto",
    ) -> NextItemRecommender:
        """Read a model written by :meth:`save` for ``catalog`` (it must be the catalogue it
        was trained on). ``base_model``/``dtype`` override the record's (the base must be the
        same network, e.g. the same model from another folder)."""
        from safetensors.torch import load_file

        from llmrec.models.identity import resolve_base
        from llmrec.models.loader import QuantizationConfig, load_model
        from llmrec.nextitem.network import ItemTokenLM, keep_first_layers

        folder = Path(path)
        meta = read_model_meta(folder, cls.name, catalog)
        record = dict(meta["config"])
        config = NextItemConfig.from_dict(record.pop("nextitem"))
        vocab = EventVocab.from_dict(record.pop("vocab"))
        record.pop("n_items", None)
        quant = record.get("quantization")
        if base_model is None:  # the record's base, found on this machine
            base_model = resolve_base(
                record["base_model"], record.get("base"), f"next-item model {folder}"
            )
        loaded = load_model(
            base_model,
            device=device,
            dtype=dtype or record.get("dtype", "auto"),
            quantization=QuantizationConfig(**quant) if quant else None,
        )
        backbone = keep_first_layers(loaded.model, config.layers)
        if (folder / ADAPTER_DIR).is_dir():
            from peft import PeftModel

            from llmrec.models.adapters import quiet_adalora_rank_patterns

            with quiet_adalora_rank_patterns():
                backbone = PeftModel.from_pretrained(backbone, str(folder / ADAPTER_DIR))
        state = load_file(str(folder / HEAD_FILE))
        text = state.get("text_vectors")
        net = ItemTokenLM(
            backbone,
            len(catalog),
            config,
            vocab,
            known=state["known"].numpy(),
            text_vectors=None if text is None else np.zeros(tuple(text.shape), np.float32),
        )
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("backbone.")]
        if missing or unexpected:
            raise ValueError(
                f"{folder / HEAD_FILE} does not fit this model: missing {missing}, "
                f"unexpected {unexpected}"
            )
        net.to(loaded.model.device if hasattr(loaded.model, "device") else "cpu")
        net.eval()
        for param in net.parameters():
            param.requires_grad_(False)
        return cls(net, catalog, vocab, config, record)

    def merge(self) -> NextItemRecommender:
        """Fold a LoRA/AdaLoRA/QLoRA adapter into the base weights (faster scoring, same
        scores up to rounding); prefix tuning cannot be merged."""
        from llmrec.models.adapters import merge_adapter

        backbone = self.net.backbone
        if hasattr(backbone, "peft_config"):
            self.net.backbone = merge_adapter(backbone, str(self.record.get("method", "lora")))
        return self


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of ``scores`` (n, N), float32; ``-inf`` entries stay ``-inf``."""
    scores = np.asarray(scores, dtype=np.float64)
    top = np.max(scores, axis=1, keepdims=True)  # (n, 1)
    top = np.where(np.isfinite(top), top, 0.0)
    shifted = scores - top
    with np.errstate(divide="ignore"):
        norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (n, 1)
    return (shifted - norm).astype(np.float32)


def head_state(net: Any) -> dict[str, Any]:
    """The part of ``net``'s state that is not the base LLM: every tensor outside ``backbone``
    (contiguous CPU copies, as safetensors wants)."""
    return {
        k: v.detach().cpu().contiguous()
        for k, v in net.state_dict().items()
        if not k.startswith("backbone.")
    }

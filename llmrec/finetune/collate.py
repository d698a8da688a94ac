"""Batches for the ranking loss: typed training rows -> left-padded tensors.

A batch of ``B`` rows whose prompts pad to ``T`` tokens and whose widest candidate list has ``L``
labels holds ``input_ids`` / ``attention_mask`` (B, T), ``kind`` (B,) (1: rank row, 0: reason
row), ``label_ids`` / ``label_mask`` (B, L), ``target`` (B,), ``lm_labels`` (B, T) and, when any
row carries a residual prior, ``prior`` (B, L) and the scalar ``scale``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmrec.finetune.examples import RankRow, ReasonRow, TrainingRow
from llmrec.prompts.builder import label_token_ids


class RankCollator:
    """Tokenize rows into left-padded batches.

    Rank rows carry the candidates' label token ids, the target's position and, for a residual
    ranker, each label's prior (then the batch also holds the loss scale); reason rows carry
    causal-LM labels on the answer tokens only (-100 elsewhere).
    """

    def __init__(self, tokenizer: Any, max_length: int = 2048, scale: float = 1.0) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        #: residual training: the multiplier of (LLM log-probs + prior) in the loss
        self.scale = scale
        self._label_ids: dict[tuple[str, ...], dict[str, int]] = {}

    def label_ids(self, text: str, labels: Sequence[str]) -> list[int]:
        """The token id that starts each label's answer after ``text`` (cached per label set)."""
        key = tuple(sorted(labels))
        if key not in self._label_ids:
            ids = label_token_ids(self.tokenizer, text, key)
            self._label_ids[key] = dict(zip(key, ids, strict=True))
        return [self._label_ids[key][label] for label in labels]

    def __call__(self, rows: Sequence[TrainingRow]) -> dict[str, Any]:
        import torch

        texts, answer_lengths = self._texts(rows)
        enc = self.tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
        if enc["input_ids"].shape[1] > self.max_length:
            raise ValueError(f"a training prompt is longer than {self.max_length} tokens")
        n = len(rows)
        width = max((len(r.labels) for r in rows if isinstance(r, RankRow)), default=1)
        label_ids = torch.zeros((n, width), dtype=torch.long)  # (B, L)
        label_mask = torch.zeros((n, width), dtype=torch.bool)  # (B, L)
        target = torch.zeros(n, dtype=torch.long)  # (B,)
        lm_labels = torch.full_like(enc["input_ids"], -100)  # (B, T)
        kind = torch.zeros(n, dtype=torch.long)  # (B,)
        prior = torch.zeros((n, width), dtype=torch.float32)  # (B, L)
        for i, row in enumerate(rows):
            if isinstance(row, RankRow):
                ids = self.label_ids(row.text, row.labels)
                label_ids[i, : len(ids)] = torch.as_tensor(ids)
                label_mask[i, : len(ids)] = True
                target[i] = row.target
                kind[i] = 1
                if row.prior is not None:
                    prior[i, : len(ids)] = torch.as_tensor(row.prior, dtype=torch.float32)
            else:  # the answer is the last tokens of a left-padded row
                k = answer_lengths[i]
                lm_labels[i, -k:] = enc["input_ids"][i, -k:]
        batch = {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "kind": kind,
            "label_ids": label_ids,
            "label_mask": label_mask,
            "target": target,
            "lm_labels": lm_labels,
        }
        if any(isinstance(r, RankRow) and r.prior is not None for r in rows):
            batch["prior"] = prior
            batch["scale"] = torch.tensor(self.scale)  # ()
        return batch

    def _texts(self, rows: Sequence[TrainingRow]) -> tuple[list[str], list[int]]:
        """Each row's model text (a reason row's with its answer and EOS) and its answer's
        length in tokens (0 for rank rows)."""
        tok = self.tokenizer
        eos = tok.eos_token or ""
        texts, answer_lengths = [], []
        for row in rows:
            if isinstance(row, ReasonRow):
                full = row.text + row.answer + eos
                n_prompt = len(tok(row.text, add_special_tokens=False)["input_ids"])
                n_full = len(tok(full, add_special_tokens=False)["input_ids"])
                texts.append(full)
                answer_lengths.append(max(1, n_full - n_prompt))
            else:
                texts.append(row.text)
                answer_lengths.append(0)
        return texts, answer_lengths

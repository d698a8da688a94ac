"""Score candidates with a causal LLM: one forward pass per prompt, or generation as a fallback.

One-pass listwise ranking (the verbalizer approach of LlamaRec): the prompt ends where the answer
starts; the model's next-token logits at that position, read at the token of each candidate
label (``A``, ``B``, ...), give every candidate a score at once, hence a full ordering from one
forward pass. Prompts are batched (sorted by length to waste little padding) and padded on the
left so that the last position of every row is the answer position; only that position's logits
are computed (``logits_to_keep=1``), which skips the vocabulary projection everywhere else.

The generative fallback asks the model to write the ranked labels and parses them (labels first,
then titles), mapping what it can to catalogue items; whatever it leaves out follows in the
retriever's order. It serves tokenizers whose labels are not single tokens and is the slow
reference that the one-pass ranker is measured against.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from llmrec.prompts.builder import PromptBuilder, RankPrompt, TextPrompt, label_token_ids


class LLMScorer:
    """Turns :class:`RankPrompt` objects into per-label log-probabilities with one model."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        builder: PromptBuilder,
        batch_size: int = 8,
        max_length: int = 2048,
        write_with_adapter: bool = True,
    ) -> None:
        self.model = model
        #: False: :meth:`generate` runs the base with the adapters disabled, for an adapter
        #: trained only to rank (see :func:`llmrec.models.adapters.writes_text`)
        self.write_with_adapter = write_with_adapter
        self.tokenizer = tokenizer
        self.builder = builder
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        self._label_ids: dict[tuple[str, ...], dict[str, int]] = {}

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def label_ids(self, prompt: RankPrompt) -> list[int]:
        key = tuple(sorted(prompt.labels))
        if key not in self._label_ids:
            ids = label_token_ids(self.tokenizer, prompt.text, key)
            self._label_ids[key] = dict(zip(key, ids, strict=True))
        return [self._label_ids[key][label] for label in prompt.labels]

    def encode(self, texts: Sequence[str]) -> dict[str, Any]:
        """Left-padded token ids for ``texts``; refuses prompts longer than ``max_length``."""
        # Tokenize unpadded, then pad in Python: a fast tokenizer keeps its padding settings in
        # one shared Rust object, so a padded call racing an unpadded one in another thread (the
        # service's request threads count prompt tokens while the batcher encodes) could come
        # back ragged. Left padding whatever the tokenizer's default: the last position must be
        # the answer's.
        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        batch = self.tokenizer.pad(
            {"input_ids": ids}, padding=True, padding_side="left", return_tensors="pt"
        )
        if batch["input_ids"].shape[1] > self.max_length:
            raise ValueError(
                f"a prompt has {batch['input_ids'].shape[1]} tokens, over max_length "
                f"{self.max_length}; lower the history budget or the number of candidates"
            )
        return {k: v.to(self.device) for k, v in batch.items()}

    def last_logits(self, texts: Sequence[str]) -> Any:
        """Logits of the next token after each text: a (len(texts), vocab) tensor."""
        import torch

        batch = self.encode(texts)
        with torch.inference_mode():
            out = self.model(**batch, logits_to_keep=1, use_cache=False)
        return out.logits[:, -1, :].float()

    def one_pass_possible(self, prompt: RankPrompt) -> bool:
        try:
            self.label_ids(prompt)
        except ValueError:
            return False
        return True

    def score(self, prompts: Sequence[RankPrompt], progress: bool = False) -> list[np.ndarray]:
        """Log-softmax over each prompt's labels (in the prompt's label order).

        When this tokenizer cannot give every label its own token, the ranking is generated and
        parsed instead, and the scores are the log of a rank-based distribution (best first).
        """
        import torch

        if not prompts:
            return []
        if not all(self.one_pass_possible(p) for p in prompts):
            return [
                _scores_from_order(p, order)
                for p, order in zip(prompts, self.rank_generative(prompts), strict=True)
            ]
        lengths = [len(p.text) for p in prompts]
        order = np.argsort(lengths, kind="stable")
        results: list[np.ndarray | None] = [None] * len(prompts)
        bar = tqdm(total=len(prompts), desc="LLM ranking", unit="prompt", disable=not progress)
        for start in range(0, len(prompts), self.batch_size):
            chunk = [prompts[i] for i in order[start : start + self.batch_size]]
            logits = self.last_logits([p.text for p in chunk])
            for row, prompt in zip(range(len(chunk)), chunk, strict=True):
                ids = torch.as_tensor(self.label_ids(prompt), device=logits.device)
                scores = torch.log_softmax(logits[row, ids], dim=-1).cpu().numpy()
                results[int(order[start + row])] = scores.astype(np.float32)
            bar.update(len(chunk))
        bar.close()
        return [r for r in results if r is not None]

    # ------------------------------------------------------------------ generative fallback
    def generate(
        self,
        texts: Sequence[str],
        max_new_tokens: int,
        min_new_tokens: int = 0,
        sample_seed: int | None = None,
    ) -> list[str]:
        """Continuations of ``texts`` (the answers only), at least ``min_new_tokens`` long:
        greedy, or sampled (temperature 0.7, top-p 0.9) with ``sample_seed``."""
        import torch

        batch = self.encode(texts)
        kwargs: dict[str, Any] = {"do_sample": False}
        if sample_seed is not None:
            torch.manual_seed(sample_seed)
            kwargs = {"do_sample": True, "temperature": 0.7, "top_p": 0.9}
        writer = nullcontext()
        if not self.write_with_adapter and hasattr(self.model, "disable_adapter"):
            writer = self.model.disable_adapter()
        with torch.inference_mode(), writer:
            out = self.model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                min_new_tokens=min_new_tokens or None,
                pad_token_id=self.tokenizer.pad_token_id,
                **kwargs,
            )
        new = out[:, batch["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def preference(self, prompts: Sequence[TextPrompt], answers: Sequence[str] = ("Yes", "No")):
        """Pointwise preference: ``log p(Yes) - log p(No)`` at the answer position, per prompt
        (built by :meth:`PromptBuilder.pointwise`); one forward pass per prompt, batched."""
        out = np.zeros(len(prompts), dtype=np.float32)
        for start in range(0, len(prompts), self.batch_size):
            chunk = list(prompts[start : start + self.batch_size])
            logits = self.last_logits([p.text for p in chunk])
            for row, prompt in enumerate(chunk):
                yes, no = first_answer_tokens(self.tokenizer, prompt.text, answers)
                pair = logits[row, [yes, no]].log_softmax(-1)
                out[start + row] = float(pair[0] - pair[1])
        return out

    def rank_generative(
        self, prompts: Sequence[RankPrompt], max_new_tokens: int | None = None
    ) -> list[list[str]]:
        """Item ids best first, parsed from generated text; unnamed candidates follow in the
        order the retriever gave them (the prompt's item order before shuffling is unknown here,
        so they follow in label order)."""
        out = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = list(prompts[start : start + self.batch_size])
            budget = max_new_tokens or 3 * max(len(p.labels) for p in chunk)
            texts = self.generate([p.text for p in chunk], budget)
            out.extend(
                parse_ranking(text, p, self.builder) for text, p in zip(texts, chunk, strict=True)
            )
        return out


def first_answer_tokens(tokenizer: Any, prompt_text: str, answers: Sequence[str]) -> list[int]:
    """The first token of each answer right after the prompt; they must all differ."""
    base = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    ids = []
    for answer in answers:
        full = tokenizer(prompt_text + answer, add_special_tokens=False)["input_ids"]
        if full[: len(base)] != base or len(full) <= len(base):
            raise ValueError(f"answer {answer!r} does not extend the prompt's tokens cleanly")
        ids.append(full[len(base)])
    if len(set(ids)) != len(ids):
        raise ValueError(f"answers {list(answers)} start with the same token")
    return ids


def _scores_from_order(prompt: RankPrompt, order: Sequence[str]) -> np.ndarray:
    """Log-probabilities proportional to 1 / (rank + 1) for an ordering of the prompt's items."""
    weights = np.array([1.0 / (order.index(i) + 1) for i in prompt.item_ids])
    return np.log(weights / weights.sum()).astype(np.float32)


_LABEL = re.compile(r"\(?\b([A-Z])\b\)?")
#: A piece that starts with a label written as one: "(C)", "C)", "C.", "C:" or "C" alone, but
#: not the first word of a title ("A Beautiful Mind", "I.Q.").
_LEAD_LABEL = re.compile(r"\(?([A-Z])(?:\)|[.:\]](?![A-Za-z])|$)")


def parse_ranking(text: str, prompt: RankPrompt, builder: PromptBuilder | None = None) -> list[str]:
    """Map a generated answer to candidate item ids, best first.

    Labels (``C``, ``(C)``) are read in order of appearance; pieces that are not labels are
    matched to candidate titles, with or without the year (closest match above 0.8 similarity);
    a piece starting with a bare capital letter ("A Beautiful Mind") is read as a title first.
    Only the prompt's candidates can come out, each once; those never mentioned follow in label
    order.
    """
    chosen: list[str] = []
    labels = set(prompt.labels)
    for piece in re.split(r"[,;\n>]+", text):
        piece = piece.strip()
        if not piece:
            continue
        match = _LEAD_LABEL.match(piece)
        item = None
        if match and match.group(1) in labels:
            item = prompt.item_for(match.group(1))
        elif builder is not None:
            item = _match_title(piece, prompt, builder)
        if item is None:  # "C Heat": a bare letter that starts no candidate's title
            match = _LABEL.match(piece)
            if match and match.group(1) in labels:
                item = prompt.item_for(match.group(1))
        if item is not None and item not in chosen:
            chosen.append(item)
    chosen += [i for i in prompt.item_ids if i not in chosen]
    return chosen


def _match_title(piece: str, prompt: RankPrompt, builder: PromptBuilder) -> str | None:
    titles = {}
    for i in prompt.item_ids:  # "Heat (1995)" and "Heat"
        titles.setdefault(builder.item_text(i, "history").lower(), i)
        titles.setdefault(builder.clean(builder.catalog.item(i).title).lower(), i)
    best = difflib.get_close_matches(piece.lower(), list(titles), n=1, cutoff=0.8)
    return titles[best[0]] if best else None

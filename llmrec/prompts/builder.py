"""The one prompt builder that fine-tuning, evaluation and serving share.

:class:`PromptBuilder` turns a user's behaviour sequence and a list of candidate items into chat
messages through a versioned template (:mod:`llmrec.prompts.templates`), then into model text
through the tokenizer's chat template when the model has one. It decides:

- which history entries go in: the most recent ``max_history`` items, then the oldest dropped
  until the history fits ``history_token_budget`` tokens (the newest behaviour always stays);
- how an item reads: a sandboxed item template (:class:`~llmrec.data.render.ItemTextRenderer`,
  the rendering the text view uses too), cut per item to ``item_max_chars``;
- what else describes the user: rating, behaviour type and relative time of each history entry
  where the data has them, the user profile, and optionally the retrieval evidence per candidate;
- the candidate order: shuffled with a seed derived from ``seed`` and the user, so no position
  carries the answer and the same request always gets the same prompt;
- the labels ``A``, ``B``, ... that name the candidates.

Item and user text is data: it is inserted as plain text (never evaluated), stripped of control
characters and of anything that looks like a chat-template control token, so a title cannot open a
new message or end the prompt.
"""

from __future__ import annotations

import re
import string
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.data.records import Candidate, UserSequence
from llmrec.data.render import DEFAULT_HISTORY_ENTRY_TEMPLATE, ItemTextRenderer
from llmrec.prompts.templates import load_template
from llmrec.validation import check_number, reject_unknown

LABELS = tuple(string.ascii_uppercase)
MAX_CANDIDATES = len(LABELS)
#: One history line's item text, ``Toy Story (1995)``: the entry the text view embeds, too.
HISTORY_ITEM_TEMPLATE = DEFAULT_HISTORY_ENTRY_TEMPLATE
CANDIDATE_ITEM_TEMPLATE = (
    "{{ title }}{% if year is not none %} ({{ year }}){% endif %}"
    "{% if categories %} - {{ categories | join(', ') }}{% endif %}"
)
#: Anything shaped like a chat control token: ``<|im_start|>``, ``<|eot_id|>``, ``<s>``, ``[INST]``.
_CONTROL = re.compile(r"<\|[^<>|]{0,40}\|>|</?s>|\[/?INST\]|<<SYS>>|<</SYS>>", re.IGNORECASE)
_NONPRINT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def sanitize_text(text: str, special_tokens: Sequence[str] = ()) -> str:
    """``text`` as inert data: control characters, chat control tokens and the tokenizer's own
    special tokens removed, whitespace collapsed to single spaces."""
    text = _NONPRINT.sub(" ", str(text))
    for token in special_tokens:
        if token:
            text = text.replace(token, " ")
    text = _CONTROL.sub(" ", text)
    return " ".join(text.split())


def relative_time(delta_seconds: float) -> str:
    """A short description of how long before the latest event something happened."""
    days = max(0.0, float(delta_seconds)) / 86400.0
    if days < 1:
        return "same day"
    if days < 14:
        return f"{int(days)} d before"
    if days < 60:
        return f"{int(days // 7)} wk before"
    if days < 730:
        return f"{int(days // 30)} mo before"
    return f"{int(days // 365)} yr before"


def stable_seed(*parts: object) -> int:
    """A seed that is the same in every process (Python's ``hash`` of a str is salted)."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode("utf-8"))


@dataclass(frozen=True)
class PromptConfig:
    """How prompts are built; stored with every adapter so serving builds what training saw."""

    listwise_template: str = "rank_listwise"
    pointwise_template: str = "rank_pointwise"
    reason_template: str = "reason"
    max_history: int = 10
    history_token_budget: int = 160
    item_max_chars: int = 80
    history_item_template: str = HISTORY_ITEM_TEMPLATE
    candidate_item_template: str = CANDIDATE_ITEM_TEMPLATE
    include_rating: bool = True
    include_behavior: bool = True
    include_time: bool = False
    include_profile: bool = True
    #: Which profile fields to show (``None``: all of them).
    profile_fields: tuple[str, ...] | None = None
    include_evidence: bool = False
    shuffle: bool = True
    #: "shuffled": candidate lines in a seeded random order, labelled A, B, ... top to bottom;
    #: "retrieval": lines in the retriever's order (best first, as LlamaRec lists them) with the
    #: labels shuffled instead, so no label carries the answer but the line order carries the
    #: retriever's opinion.
    candidate_order: str = "shuffled"
    seed: int = 0

    def __post_init__(self) -> None:
        check_number("max_history", self.max_history, minimum=1)
        check_number("history_token_budget", self.history_token_budget, minimum=8)
        check_number("item_max_chars", self.item_max_chars, minimum=16)
        if self.candidate_order not in ("shuffled", "retrieval"):
            raise ValueError(
                f"candidate_order must be shuffled or retrieval, got {self.candidate_order!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PromptConfig:
        reject_unknown(cls, raw, "prompt")
        values = dict(raw)
        if isinstance(values.get("profile_fields"), list):
            values["profile_fields"] = tuple(values["profile_fields"])
        return cls(**values)


@dataclass(frozen=True)
class RankPrompt:
    """A rendered listwise prompt and what its labels mean."""

    messages: tuple[Mapping[str, str], ...]
    text: str
    labels: tuple[str, ...]
    item_ids: tuple[str, ...]
    target_label: str | None = None
    template: str = ""

    def item_for(self, label: str) -> str:
        return self.item_ids[self.labels.index(label)]


@dataclass(frozen=True)
class TextPrompt:
    """A rendered prompt with a free-text (or yes/no) answer."""

    messages: tuple[Mapping[str, str], ...]
    text: str
    answer: str | None = None
    template: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


class PromptBuilder:
    """Render recommendation prompts for one catalogue and (optionally) one tokenizer.

    Without a tokenizer, token counts are estimated (4 characters a token) and messages are joined
    in a plain ``System:/User:/Assistant:`` layout; with one, its chat template is used when it has
    one and token budgets are exact.
    """

    def __init__(
        self,
        catalog: Catalog,
        tokenizer: Any | None = None,
        config: PromptConfig | None = None,
        profiles: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.catalog = catalog
        self.tokenizer = tokenizer
        self.config = config or PromptConfig()
        self.profiles = profiles or {}
        cfg = self.config
        self._history_item = ItemTextRenderer(cfg.history_item_template, cfg.item_max_chars)
        self._candidate_item = ItemTextRenderer(cfg.candidate_item_template, cfg.item_max_chars)
        specials = []
        if tokenizer is not None:
            specials = [t for t in getattr(tokenizer, "all_special_tokens", []) if t]
            specials += [str(t) for t in getattr(tokenizer, "additional_special_tokens", []) or []]
        self._specials = tuple(sorted(set(specials), key=len, reverse=True))
        self.listwise_template = load_template(cfg.listwise_template)
        self.pointwise_template = load_template(cfg.pointwise_template)
        self.reason_template = load_template(cfg.reason_template)
        self._item_cache: dict[tuple[str, str], str] = {}

    # ------------------------------------------------------------------ pieces
    @property
    def template_versions(self) -> dict[str, str]:
        return {
            t.task: t.key
            for t in (self.listwise_template, self.pointwise_template, self.reason_template)
        }

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is None:
            return max(1, len(text) // 4)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def clean(self, text: str) -> str:
        return sanitize_text(text, self._specials)

    def item_text(self, item_id: str, kind: str = "candidate") -> str:
        key = (kind, item_id)
        if key not in self._item_cache:
            renderer = self._candidate_item if kind == "candidate" else self._history_item
            self._item_cache[key] = self.clean(renderer.render(self.catalog.item(item_id)))
        return self._item_cache[key]

    def profile_text(self, user_id: str | None) -> str:
        if not self.config.include_profile or user_id is None:
            return ""
        profile = self.profiles.get(user_id) or {}
        fields = self.config.profile_fields
        parts = [
            f"{self.clean(k)}: {self.clean(v)}"
            for k, v in profile.items()
            if str(v).strip() and (fields is None or k in fields)
        ]
        return self.clean("; ".join(parts))[:200]

    def history_entries(self, history: UserSequence) -> list[dict[str, Any]]:
        """The entries shown, oldest first: the newest ``max_history`` items that fit the budget."""
        cfg = self.config
        n = len(history)
        start = max(0, n - cfg.max_history)
        last_time = history.timestamps[-1] if n else 0.0
        entries: list[dict[str, Any]] = []
        for i in range(start, n):
            item_id = history.item_ids[i]
            if item_id not in self.catalog:
                continue
            rating = None
            if cfg.include_rating and history.ratings is not None:
                value = history.ratings[i]
                if value is not None and not np.isnan(value):
                    rating = int(value) if float(value).is_integer() else round(float(value), 1)
            behavior = None
            if cfg.include_behavior and history.behaviors is not None and history.behaviors[i]:
                behavior = self.clean(history.behaviors[i])[:24]
            when = None
            if cfg.include_time:
                when = relative_time(last_time - history.timestamps[i])
            entries.append(
                {
                    "text": self.item_text(item_id, "history"),
                    "rating": rating,
                    "behavior": behavior,
                    "when": when,
                }
            )
        # Keep the newest entries that fit the token budget (always at least the newest one).
        kept: list[dict[str, Any]] = []
        used = 0
        for entry in reversed(entries):
            cost = self.count_tokens(_entry_line(entry))
            if kept and used + cost > cfg.history_token_budget:
                break
            kept.append(entry)
            used += cost
        return kept[::-1]

    def order(self, n: int, user_id: str | None, salt: object = "") -> np.ndarray:
        """The seeded shuffle applied to ``n`` candidates of this user."""
        if not self.config.shuffle:
            return np.arange(n)
        rng = np.random.default_rng(stable_seed(self.config.seed, user_id, salt))
        return rng.permutation(n)

    def render_messages(self, messages: Sequence[Mapping[str, str]]) -> str:
        """Messages as model text ending where the assistant's answer starts."""
        tokenizer = self.tokenizer
        if tokenizer is not None and getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(
                list(messages), add_generation_prompt=True, tokenize=False
            )
        parts = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n\n".join(parts) + "\n\nAssistant:"

    # ------------------------------------------------------------------ prompts
    def listwise(
        self,
        history: UserSequence,
        candidates: Sequence[str | Candidate],
        *,
        target: str | None = None,
        salt: object = "",
    ) -> RankPrompt:
        """The listwise ranking prompt for ``history`` over ``candidates`` (ids or
        :class:`Candidate` records, given best first by the retriever)."""
        ids = [c.item_id if isinstance(c, Candidate) else str(c) for c in candidates]
        if not ids:
            raise ValueError("no candidates to rank")
        if len(ids) > MAX_CANDIDATES:
            raise ValueError(f"at most {MAX_CANDIDATES} candidates fit one prompt, got {len(ids)}")
        if len(set(ids)) != len(ids):
            raise ValueError("candidate items repeat")
        missing = [i for i in ids if i not in self.catalog]
        if missing:
            raise ValueError(f"candidates not in the catalogue: {missing[:5]}")
        if target is not None and target not in ids:
            raise ValueError(f"target {target!r} is not among the candidates")
        perm = self.order(len(ids), history.user_id, salt)
        if self.config.candidate_order == "retrieval":
            # lines in the retriever's order; the labels are what is shuffled
            lines = list(range(len(ids)))
            labels = tuple(LABELS[int(p)] for p in perm)
        else:
            lines = [int(j) for j in perm]
            labels = LABELS[: len(ids)]
        shown = []
        for label, j in zip(labels, lines, strict=True):
            evidence = ""
            if self.config.include_evidence:
                evidence = f"rank {j + 1}"
            shown.append({"label": label, "text": self.item_text(ids[j]), "evidence": evidence})
        item_ids = tuple(ids[j] for j in lines)
        template = self.listwise_template
        values = {
            "history": self.history_entries(history),
            "candidates": shown,
            "profile": self.profile_text(history.user_id),
            "labels": sorted(labels),
        }
        messages = (
            {"role": "system", "content": template.render("system", **values).strip()},
            {"role": "user", "content": template.render("user", **values).strip()},
        )
        target_label = labels[item_ids.index(target)] if target is not None else None
        return RankPrompt(
            messages=messages,
            text=self.render_messages(messages),
            labels=labels,
            item_ids=item_ids,
            target_label=target_label,
            template=template.key,
        )

    def pointwise(
        self, history: UserSequence, item_id: str, label: bool | None = None
    ) -> TextPrompt:
        template = self.pointwise_template
        values = {
            "history": self.history_entries(history),
            "candidate": {"text": self.item_text(item_id), "evidence": ""},
            "profile": self.profile_text(history.user_id),
        }
        messages = (
            {"role": "system", "content": template.render("system", **values).strip()},
            {"role": "user", "content": template.render("user", **values).strip()},
        )
        answer = None if label is None else template.render("answer", label=label, **values)
        return TextPrompt(messages, self.render_messages(messages), answer, template.key)

    def reason(
        self,
        history: UserSequence,
        item_id: str,
        facts: Sequence[str] = (),
        reason: str | None = None,
    ) -> TextPrompt:
        template = self.reason_template
        values = {
            "history": self.history_entries(history),
            "item": {"text": self.item_text(item_id)},
            "facts": [self.clean(f) for f in facts],
            "profile": self.profile_text(history.user_id),
        }
        messages = (
            {"role": "system", "content": template.render("system", **values).strip()},
            {"role": "user", "content": template.render("user", **values).strip()},
        )
        answer = None if reason is None else template.render("answer", reason=reason)
        return TextPrompt(
            messages, self.render_messages(messages), answer, template.key, {"item_id": item_id}
        )


def _entry_line(entry: Mapping[str, Any]) -> str:
    extras = [str(entry[k]) for k in ("behavior", "rating", "when") if entry.get(k) is not None]
    return f"- {entry['text']} " + " ".join(f"[{x}]" for x in extras) + "\n"


def label_token_ids(tokenizer: Any, prompt_text: str, labels: Sequence[str] = LABELS) -> list[int]:
    """The token id that starts each label's answer right after ``prompt_text``.

    Found by tokenizing the prompt with and without each label (no id of any tokenizer is
    hard-coded); every label must add exactly one token, and all must differ, otherwise
    one-pass ranking is impossible with this tokenizer and labels.
    """
    base = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    ids = []
    for label in labels:
        full = tokenizer(prompt_text + label, add_special_tokens=False)["input_ids"]
        if full[: len(base)] != base or len(full) != len(base) + 1:
            raise ValueError(
                f"label {label!r} is not a single token after the prompt with this tokenizer; "
                "one-pass ranking needs single-token labels (use the generative ranker)"
            )
        ids.append(full[-1])
    if len(set(ids)) != len(ids):
        raise ValueError("two labels map to the same token with this tokenizer")
    return ids

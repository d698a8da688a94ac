"""What the next-item LLM reads: item text vectors and per-event features, in windows.

- :func:`item_text_vectors` - one vector per catalogue item, the base LLM's mean last hidden state
  over the item's rendered text. Computed once per (model, catalogue, template) and saved with
  the model; an item's vector depends on its text alone, so a new item gets one (cold start).
- :class:`EventVocab` - what turns an event's views into small integers, fitted on the training
  data and saved with the model: the training period (for time buckets), the rating range and
  the behaviour types.
- :func:`encode_events` - a user's events as an int64 array (L, 5): item token (catalogue index
  + 1; 0 pads), gap bucket, rating level, time bucket, behaviour id (0 everywhere means
  "absent").
- :func:`training_windows` / :func:`left_pad` - windows of at most ``max_len + 1`` events (each
  gives ``max_len`` next-item targets) and left-padded batches.
- :func:`shuffle_ties` - a window with the events of each run of near-simultaneous events (the
  first gap bucket) in a random order: where a log stamps several events with the same second,
  as ML-100K does for half of its consecutive ratings, their order in the file says nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from llmrec.data.catalog import Catalog
from llmrec.data.records import UserSequence

#: Columns of an encoded event array.
ITEM, GAP, RATING, TIME, BEHAVIOR = range(5)
N_FEATURES = 5
#: Rating levels: a rating is placed on 1..RATING_LEVELS over the training range (0: none).
RATING_LEVELS = 5
#: The gap bucket of an event that came right after the previous one: less than
#: 2 ** (26 / (gap_buckets - 2)) - 1 seconds later (2.6 s with 16 buckets); 1 marks a first event.
TIED_GAP = 2
#: log2(1 + seconds) of the longest gap told apart (about two years); longer ones share a bucket.
_LOG2_MAX_GAP = 26.0


@dataclass(frozen=True)
class EventVocab:
    """How raw event views become bucket ids (see :func:`encode_events`)."""

    t_min: float
    t_max: float
    gap_buckets: int
    time_buckets: int
    rating_min: float | None = None
    rating_max: float | None = None
    behaviors: tuple[str, ...] = ()

    @classmethod
    def fit(cls, train: Sequence[UserSequence], gap_buckets: int, time_buckets: int) -> EventVocab:
        times = [t for seq in train for t in seq.timestamps]
        ratings = [r for seq in train if seq.ratings is not None for r in seq.ratings]
        ratings = [r for r in ratings if r is not None and not math.isnan(r)]
        kinds = sorted({b for seq in train if seq.behaviors is not None for b in seq.behaviors})
        return cls(
            t_min=float(min(times)) if times else 0.0,
            t_max=float(max(times)) if times else 0.0,
            gap_buckets=int(gap_buckets),
            time_buckets=int(time_buckets),
            rating_min=float(min(ratings)) if ratings else None,
            rating_max=float(max(ratings)) if ratings else None,
            behaviors=tuple(kinds),
        )

    @property
    def has_ratings(self) -> bool:
        return self.rating_min is not None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["behaviors"] = list(self.behaviors)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EventVocab:
        values = dict(raw)
        values["behaviors"] = tuple(values.get("behaviors") or ())
        return cls(**values)

    # ------------------------------------------------------------------ buckets
    def gap_ids(self, timestamps: np.ndarray) -> np.ndarray:
        """(L,) int64: 1 for the first event, then 2.. by log2 of the seconds since the previous."""
        out = np.ones(len(timestamps), dtype=np.int64)
        if len(timestamps) > 1:
            gaps = np.clip(np.diff(timestamps), 0.0, None)  # (L-1,)
            scale = (self.gap_buckets - 2) / _LOG2_MAX_GAP
            level = np.floor(np.log2(1.0 + gaps) * scale).astype(np.int64)
            out[1:] = 2 + np.clip(level, 0, self.gap_buckets - 2)
        return out

    def time_ids(self, timestamps: np.ndarray) -> np.ndarray:
        """(L,) int64 in 1..time_buckets: where each event falls in the training period
        (events outside it go to the first or last bucket)."""
        span = max(self.t_max - self.t_min, 1e-9)
        pos = (np.asarray(timestamps, dtype=np.float64) - self.t_min) / span
        return 1 + np.clip(np.floor(pos * self.time_buckets), 0, self.time_buckets - 1).astype(
            np.int64
        )

    def rating_ids(self, ratings: Sequence[float | None] | None, n: int) -> np.ndarray:
        """(L,) int64: 0 where there is no rating, else 1..RATING_LEVELS over the training range."""
        out = np.zeros(n, dtype=np.int64)
        if ratings is None or not self.has_ratings:
            return out
        low, high = float(self.rating_min), float(self.rating_max)  # type: ignore[arg-type]
        span = max(high - low, 1e-9)
        for i, r in enumerate(ratings):
            if r is None or math.isnan(r):
                continue
            level = round((min(max(float(r), low), high) - low) / span * (RATING_LEVELS - 1))
            out[i] = 1 + int(level)
        return out

    def behavior_ids(self, behaviors: Sequence[str] | None, n: int) -> np.ndarray:
        """(L,) int64: 0 where absent or unseen in training, else 1 + the type's index."""
        out = np.zeros(n, dtype=np.int64)
        if behaviors is None or not self.behaviors:
            return out
        index = {b: i + 1 for i, b in enumerate(self.behaviors)}
        for i, b in enumerate(behaviors):
            out[i] = index.get(b, 0)
        return out


def encode_events(seq: UserSequence, catalog: Catalog, vocab: EventVocab) -> np.ndarray:
    """The events of ``seq`` as int64 (L, N_FEATURES), oldest first; see the module docstring.

    Raises ``KeyError`` naming an item outside ``catalog``."""
    n = len(seq)
    out = np.zeros((n, N_FEATURES), dtype=np.int64)
    if n == 0:
        return out
    times = np.asarray(seq.timestamps, dtype=np.float64)
    out[:, ITEM] = catalog.indices(seq.item_ids) + 1
    out[:, GAP] = vocab.gap_ids(times)
    out[:, RATING] = vocab.rating_ids(seq.ratings, n)
    out[:, TIME] = vocab.time_ids(times)
    out[:, BEHAVIOR] = vocab.behavior_ids(seq.behaviors, n)
    return out


def _window_bounds(length: int, max_len: int) -> list[tuple[int, int]]:
    """(start, end) of the windows a sequence of ``length`` events is cut into, from its end."""
    bounds = []
    end = length
    while end >= 2:
        bounds.append((max(0, end - max_len - 1), end))
        end -= max_len
    return bounds


def training_windows(encoded: Sequence[np.ndarray], max_len: int) -> list[np.ndarray]:
    """Windows of at most ``max_len + 1`` events; a window of ``w`` events teaches ``w - 1``
    next items. Long sequences are cut from the end into windows overlapping by one event, so
    every transition is a target exactly once; sequences of fewer than two events give none."""
    return [
        events[start:end]
        for events in encoded
        for start, end in _window_bounds(len(events), max_len)
    ]


def window_priors(encoded: Sequence[np.ndarray], max_len: int) -> list[np.ndarray]:
    """For each window of :func:`training_windows` (same order), the item tokens the user read
    before the window's first event (int64, possibly empty)."""
    return [
        np.asarray(events[:start, ITEM], dtype=np.int64)
        for events in encoded
        for start, _ in _window_bounds(len(events), max_len)
    ]


def shuffle_ties(events: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``events`` (L, N_FEATURES) in which each run of events that came right after
    one another (every event of the run after its first has gap bucket :data:`TIED_GAP`) is put
    in a random order. Whole events move (item, rating, time, behaviour); the gap column stays
    where it was, so the run still starts with its gap from the event before it and goes on
    with tied gaps."""
    if len(events) < 2:
        return events.copy()
    starts = events[:, GAP] != TIED_GAP  # (L,): True where a new run begins
    starts[0] = True
    run = np.cumsum(starts)  # (L,) run number of each event
    order = np.lexsort((rng.random(len(events)), run))  # (L,) random order within each run
    out = events[order]
    out[:, GAP] = events[:, GAP]
    return out


def left_pad(windows: Sequence[np.ndarray], width: int) -> np.ndarray:
    """int64 (B, width, N_FEATURES): each window's last ``width`` events, right-aligned, zeros
    before."""
    out = np.zeros((len(windows), width, N_FEATURES), dtype=np.int64)
    for row, events in enumerate(windows):
        tail = events[-width:] if len(events) else events
        if len(tail):
            out[row, width - len(tail) :] = tail
    return out


def item_text_vectors(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int = 32,
    max_tokens: int = 64,
    progress: bool = True,
) -> np.ndarray:
    """float32 (len(texts), hidden): the mean of ``model``'s last hidden state over each text's
    tokens (padding excluded). ``model`` is a causal LM; its own head is not used."""
    import torch

    base = getattr(model, "model", model)  # the decoder stack under a *ForCausalLM
    device = next(model.parameters()).device
    out = []
    steps = range(0, len(texts), batch_size)
    with torch.no_grad():
        for begin in tqdm(steps, desc="item text vectors", unit="batch", disable=not progress):
            enc = tokenizer(
                list(texts[begin : begin + batch_size]),
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_tokens,
            ).to(device)
            hidden = base(**enc).last_hidden_state.float()  # (B, T, H)
            mask = enc["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
            out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)).cpu().numpy())
    if not out:
        return np.zeros((0, int(model.config.hidden_size)), dtype=np.float32)
    return np.concatenate(out).astype(np.float32)

"""Settings of the next-item LLM (:class:`NextItemConfig`), checked when built.

A recipe's ``nextitem:`` section holds these; ``--set nextitem.layers=4`` overrides one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from llmrec.validation import check_number, reject_unknown

#: Per-event views the model can read besides the item; each is used only where the data has it.
VIEWS = ("gap", "rating", "time", "behavior")
ID_INITS = ("sasrec", "cooc", "random")
TEXT_IN_INITS = ("default", "zero")


@dataclass(frozen=True)
class NextItemConfig:
    """Everything that defines the next-item LLM besides the base model and the adapter.

    - ``layers``: keep only the base LLM's first ``layers`` decoder blocks (``None``: all);
      most middle layers of an LLM add little to sequential recommendation (SLMRec) and each
      one kept costs time.
    - ``max_len``: the most recent events read per user (one input position each).
    - ``id_dim``/``id_init``: size of the learned item-ID embeddings, and where they start:
      ``"sasrec"`` copies the item embeddings of a SASRec fitted on the same training data
      (E4SRec/LLaRA-style collaborative start; ``id_dim`` must then be SASRec's hidden size),
      ``"cooc"`` a rank-``id_dim`` factorisation of the items' co-occurrence within 5 events
      (no model to fit; nearby events rather than their order), ``"random"`` starts from noise.
    - ``text``: add a projection of each item's text vector (the base LLM's mean hidden state
      over the item's rendered text) to its input and output vectors; with it, items never seen
      in training still get scores (cold start). ``text_template``/``text_max_chars`` render
      the text (``None``: the catalogue's default template). ``text_in_init``: how the input
      projection of the text vector starts - ``"default"`` (PyTorch's uniform init: the text
      part starts about as loud as the ID part) or ``"zero"`` (the model starts as an ID model
      and the gradient adds text where it helps; warm ranking lost validation NDCG@10 to the
      text part in docs/nextitem.md's ablation). ``text_input``: false keeps the text vector out
      of the input (the LLM reads ID and views only) and uses it only in the output item
      vectors, so cold items are still scored from their text while the warm input stays an ID
      sequence.
    - ``views``: the per-event views read when the data has them - ``gap`` (time since the
      previous event, log2-bucketed into ``gap_buckets``), ``rating``, ``time`` (where the event
      falls in the training period, ``time_buckets`` buckets) and ``behavior`` (the type).
    - ``dropout``: on the input item vectors; ``id_dropout``: the chance that an item's ID part
      is hidden in a training batch, so the text part learns to stand alone; with
      ``hidden_bias`` such an item also loses its own bias for the batch (the mean instead), so
      it is scored in training exactly as a cold item is scored.
    - ``score_dim``: the space in which user states meet output item vectors; ``item_bias``
      adds a learned per-item bias (popularity) to the scores.
    - ``targets_ahead``: 1 trains on the next item at every position; A > 1 also on the A - 1
      items after it, the j-th weighted 1/j (a dense all-action loss, for logs whose nearby
      events come in loose order).
    - ``exclude_seen``: leave the items already read in a window out of the training softmax at
      each position, as evaluation and serving exclude a user's history (the model then spends
      nothing on ranking seen items low); with ``seen_history`` also the items the user read
      before the window began (all of the history, as evaluation excludes it).
    - ``shuffle_ties``: in every training batch, put each run of near-simultaneous events
      (less than one gap bucket apart: 2.6 s with 16 buckets) in a fresh random order. Where a
      log stamps many events with the same second (half of ML-100K's consecutive training
      ratings share their second), the order of such a run is the file's and says nothing of
      what came next; shuffling it teaches every order the data allows.
    - ``tie_passes``: scoring only - P > 1 scores each history in P orders (as read, and P - 1
      with its runs of near-simultaneous events shuffled) and averages their log-softmax, so
      a ranking does not hang on which of several events stamped with the same second the log
      happened to list last; P forward passes per user.
    - ``negatives``: 0 trains with the full softmax over the catalogue; ``k > 0`` samples k
      shared negatives per batch by popularity (a sampled softmax with logQ correction), for
      catalogues too large for a full softmax.
    - ``head_lr``: learning rate of the item tower and scoring head (``None``: the training
      rate); the adapter keeps the training rate.
    """

    layers: int | None = 6
    max_len: int = 50
    id_dim: int = 64
    id_init: Literal["sasrec", "cooc", "random"] = "sasrec"
    text: bool = True
    text_template: str | None = None
    text_max_chars: int = 200
    text_in_init: Literal["default", "zero"] = "default"
    text_input: bool = True
    views: tuple[str, ...] = VIEWS
    gap_buckets: int = 16
    time_buckets: int = 32
    dropout: float = 0.2
    id_dropout: float = 0.1
    hidden_bias: bool = False
    score_dim: int = 64
    item_bias: bool = True
    targets_ahead: int = 1
    exclude_seen: bool = False
    seen_history: bool = False
    shuffle_ties: bool = False
    tie_passes: int = 1
    negatives: int = 0
    head_lr: float | None = None

    def __post_init__(self) -> None:
        if self.layers is not None:
            check_number("layers", self.layers, minimum=1)
        for name in (
            "max_len", "id_dim", "score_dim", "gap_buckets", "time_buckets", "targets_ahead",
            "tie_passes",
        ):  # fmt: skip
            check_number(name, getattr(self, name), minimum=1)
        check_number("text_max_chars", self.text_max_chars, minimum=16)
        check_number("negatives", self.negatives, minimum=0)
        for name in ("dropout", "id_dropout"):
            check_number(
                name, getattr(self, name), kind=float, minimum=0.0, maximum=1.0, exclusive_max=True
            )
        if self.head_lr is not None:
            check_number("head_lr", self.head_lr, kind=float, minimum=0.0, exclusive_min=True)
        if self.text_in_init not in TEXT_IN_INITS:
            raise ValueError(
                f"text_in_init must be one of {TEXT_IN_INITS}, got {self.text_in_init!r}"
            )
        if self.id_init not in ID_INITS:
            raise ValueError(f"id_init must be one of {ID_INITS}, got {self.id_init!r}")
        unknown = sorted(set(self.views) - set(VIEWS))
        if unknown:
            raise ValueError(f"unknown views {unknown}; the model can read {list(VIEWS)}")
        for name in (
            "text",
            "text_input",
            "item_bias",
            "exclude_seen",
            "seen_history",
            "hidden_bias",
            "shuffle_ties",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["views"] = list(self.views)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> NextItemConfig:
        reject_unknown(cls, raw, "nextitem")
        values = dict(raw)
        if isinstance(values.get("views"), list):
            values["views"] = tuple(values["views"])
        return cls(**values)

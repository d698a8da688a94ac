"""The next-item network: item tokens in, an LLM's first layers, scores over the catalogue out.

Per input event ``e`` (item ``i``), the vector the LLM reads is::

    LayerNorm( P_id(id_in[i]) + P_text(text[i]) + gap[e] + rating[e] + time[e] + behavior[e] )

with dropout, where ``text[i]`` is the item's (standardised) text vector from the base LLM (left
out of the input with ``text_input: false``) and ``id_in`` a learned ID embedding (optionally a
trained SASRec's). The LLM's decoder layers (the first ``layers`` of them, adapted by PEFT) turn
the sequence into hidden states; at every position ``user = W_u h`` scores every item ``j`` as
``user . out[j] + bias[j]`` with::

    out[j] = Q_id(id_out[j]) + Q_text(text[j])

Items never seen in training ("cold") have no trained ID vectors: they are left out of the
training softmax and scored from their text alone (with the mean bias). During training each
item's ID part is hidden with probability ``id_dropout`` (in and out), so the text part learns
to stand alone. The LLM's own output head is replaced by the identity: nothing over the
vocabulary is computed.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmrec.nextitem.config import NextItemConfig
from llmrec.nextitem.features import BEHAVIOR, GAP, ITEM, RATING, RATING_LEVELS, TIME, EventVocab

logger = logging.getLogger(__name__)

#: Popularity exponent of the sampled-softmax proposal (word2vec's unigram^0.75).
_SAMPLING_POWER = 0.75


def keep_first_layers(model: Any, layers: int | None) -> Any:
    """Cut a causal LM to its first ``layers`` decoder blocks (``None``: keep all) and replace its
    vocabulary head by the identity, so its "logits" are the final (normed) hidden states."""
    stack = getattr(model, "model", None)
    blocks = getattr(stack, "layers", None)
    if blocks is None:
        raise ValueError(
            f"{type(model).__name__} has no decoder stack at model.layers; the next-item LLM "
            "supports Llama-style causal LMs (Llama, SmolLM, Qwen, Mistral, Gemma ...)"
        )
    total = len(blocks)
    if layers is not None and layers < total:
        stack.layers = nn.ModuleList(list(blocks)[:layers])
        model.config.num_hidden_layers = int(layers)
        layer_types = getattr(model.config, "layer_types", None)
        if isinstance(layer_types, list):
            model.config.layer_types = layer_types[:layers]
    model.lm_head = nn.Identity()
    return model


def standardise(vectors: np.ndarray) -> np.ndarray:
    """Each column of ``vectors`` (N, T) to mean 0 and variance 1 over the items."""
    mean = vectors.mean(axis=0, keepdims=True)
    std = vectors.std(axis=0, keepdims=True)
    return ((vectors - mean) / np.maximum(std, 1e-6)).astype(np.float32)


class ItemTokenLM(nn.Module):
    """See the module docstring. ``backbone``: a causal LM cut by :func:`keep_first_layers`,
    possibly wrapped by peft. ``known``: bool (N,), the items seen in training."""

    #: read by transformers' Trainer when it reloads a checkpoint
    _keys_to_ignore_on_save = None

    def __init__(
        self,
        backbone: Any,
        n_items: int,
        config: NextItemConfig,
        vocab: EventVocab,
        known: np.ndarray,
        text_vectors: np.ndarray | None = None,
        id_vectors: np.ndarray | None = None,
        item_counts: np.ndarray | None = None,
        embed_rms: float = 1.0,
    ) -> None:
        super().__init__()
        hidden = int(backbone.config.hidden_size)
        self.settings = config
        self.n_items = int(n_items)
        self.backbone = backbone
        d_id, d_s = config.id_dim, config.score_dim
        self.id_in = nn.Embedding(n_items + 1, d_id, padding_idx=0)
        self.id_out = nn.Embedding(n_items, d_id)
        self.id_in_proj = nn.Linear(d_id, hidden)
        self.id_out_proj = nn.Linear(d_id, d_s, bias=False)
        nn.init.normal_(self.id_in.weight, std=0.02)
        nn.init.normal_(self.id_out.weight, std=0.02)
        with torch.no_grad():
            self.id_in.weight[0].zero_()
            if id_vectors is not None:
                start = torch.from_numpy(np.asarray(id_vectors, dtype=np.float32))
                if start.dim() == 2:  # one start for input and output vectors
                    start = start.unsqueeze(0).expand(2, -1, -1)
                if tuple(start.shape) != (2, n_items, d_id):
                    raise ValueError(
                        f"ID vectors have shape {tuple(id_vectors.shape)}, expected "
                        f"({n_items}, {d_id}) or (2, {n_items}, {d_id}) for separate input "
                        "and output starts"
                    )
                self.id_in.weight[1:].copy_(start[0])
                self.id_out.weight.copy_(start[1])
            if d_id == d_s:  # a warm start scores with the ID vectors as they came
                self.id_out_proj.weight.copy_(torch.eye(d_s))
        if config.text:
            if text_vectors is None or text_vectors.shape[0] != n_items:
                raise ValueError("config.text needs a text vector for every catalogue item")
            width = text_vectors.shape[1]
            self.register_buffer("text_vectors", torch.from_numpy(standardise(text_vectors)))
            self.text_in = nn.Linear(width, hidden) if config.text_input else None
            if self.text_in is not None and config.text_in_init == "zero":
                nn.init.zeros_(self.text_in.weight)  # the gradient still reaches it: x = ... + W t
                nn.init.zeros_(self.text_in.bias)
            self.text_out = nn.Linear(width, d_s, bias=False)
            nn.init.normal_(self.text_out.weight, std=0.02 / np.sqrt(width / d_s))
        views = set(config.views)
        self.gap = nn.Embedding(vocab.gap_buckets + 1, hidden) if "gap" in views else None
        self.time = nn.Embedding(vocab.time_buckets + 1, hidden) if "time" in views else None
        self.rating = (
            nn.Embedding(RATING_LEVELS + 1, hidden, padding_idx=0)
            if "rating" in views and vocab.has_ratings
            else None
        )
        self.behavior = (
            nn.Embedding(len(vocab.behaviors) + 1, hidden, padding_idx=0)
            if "behavior" in views and vocab.behaviors
            else None
        )
        for table in (self.gap, self.time, self.rating, self.behavior):
            if table is not None:
                nn.init.normal_(table.weight, std=0.02)
                if table.padding_idx is not None:
                    with torch.no_grad():
                        table.weight[table.padding_idx].zero_()
        self.in_norm = nn.LayerNorm(hidden)
        with torch.no_grad():  # the LLM reads vectors of the size its own token embeddings have
            self.in_norm.weight.fill_(float(embed_rms))
        self.in_dropout = nn.Dropout(config.dropout)
        self.user_proj = nn.Linear(hidden, d_s)
        self.item_bias = nn.Parameter(torch.zeros(n_items)) if config.item_bias else None
        self.register_buffer("known", torch.from_numpy(np.asarray(known, dtype=bool)))
        counts = np.zeros(n_items) if item_counts is None else np.asarray(item_counts, float)
        self.register_buffer("item_counts", torch.from_numpy(counts.astype(np.float32)))

    # ------------------------------------------------------------------ pieces
    @property
    def backbone_dtype(self) -> torch.dtype:
        return next(self.backbone.parameters()).dtype

    def _id_keep(self) -> torch.Tensor:
        """float (N,): 1 where an item's ID part is used in this pass, else 0 (cold items
        always; known ones with probability ``id_dropout`` while training)."""
        keep = self.known.float()
        if self.training and self.settings.id_dropout > 0:
            keep = keep * (torch.rand_like(keep) >= self.settings.id_dropout).float()
        return keep

    def input_vectors(self, events: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(B, L, hidden) float32 for ``events`` (B, L, 5); zeros at padding."""
        items = events[..., ITEM]  # (B, L)
        index = (items - 1).clamp(min=0)  # (B, L)
        x = self.id_in_proj(self.id_in(items)) * keep[index].unsqueeze(-1)  # (B, L, H)
        if self.settings.text and self.text_in is not None:
            x = x + self.text_in(self.text_vectors[index])  # (B, L, H)
        for table, column in (
            (self.gap, GAP),
            (self.time, TIME),
            (self.rating, RATING),
            (self.behavior, BEHAVIOR),
        ):
            if table is not None:
                x = x + table(events[..., column])
        x = self.in_dropout(self.in_norm(x))  # (B, L, H)
        return x * (items > 0).unsqueeze(-1)

    def output_vectors(self, keep: torch.Tensor) -> torch.Tensor:
        """(N, score_dim) float32: every item's output vector."""
        out = self.id_out_proj(self.id_out.weight) * keep.unsqueeze(-1)  # (N, S)
        if self.settings.text:
            out = out + self.text_out(self.text_vectors)  # (N, S)
        return out

    def biases(self, keep: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) per-item score offsets; cold items get the mean of the known items' biases, and
        so do the items whose ID part ``keep`` (N,) hides when ``hidden_bias`` is on."""
        if self.item_bias is None:
            return torch.zeros(self.n_items, device=self.known.device)
        own = self.known
        if keep is not None and self.settings.hidden_bias:
            own = own & (keep > 0)
        if bool(own.all()) or not bool(self.known.any()):
            return self.item_bias
        mean = self.item_bias[self.known].mean()
        return torch.where(own, self.item_bias, mean)

    def user_states(self, events: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, score_dim) float32: the user vector after each event of left-padded ``events``."""
        if keep is None:
            keep = self._id_keep()
        x = self.input_vectors(events, keep)  # (B, L, H)
        mask = (events[..., ITEM] > 0).long()  # (B, L)
        out = self.backbone(
            inputs_embeds=x.to(self.backbone_dtype), attention_mask=mask, use_cache=False
        )
        hidden = out.logits if hasattr(out, "logits") else out[0]  # identity head: (B, L, H)
        return self.user_proj(hidden.float())  # (B, L, S)

    # ------------------------------------------------------------------ training
    def update_and_allocate(self, step: int) -> None:
        """AdaLoRA's rank allocation after an optimizer step (a no-op for other adapters); the
        Trainer's AdaLoRA callback calls it on the model it trains."""
        target = getattr(self.backbone, "base_model", None)
        if hasattr(target, "update_and_allocate"):
            target.update_and_allocate(step)

    def forward(
        self, events: torch.Tensor, prior: torch.Tensor | None = None, **_: Any
    ) -> dict[str, torch.Tensor]:
        """The training loss for left-padded windows ``events`` (B, W, 5): cross-entropy of the
        next item at every real position (W - 1 inputs). ``prior`` (B, P): item tokens each
        user read before the window (0 = padding), left out of its softmax with
        ``exclude_seen`` and ``seen_history``."""
        return {"loss": self.loss(events, prior)}

    def loss(self, events: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy of the next item at every real position; with ``targets_ahead`` = A > 1,
        of each of the next A items, the j-th weighted 1/j (a dense all-action loss: where the
        order of nearby events is loose, as when a user rates a batch of films at once, the
        items just after the next one are nearly as good an answer)."""
        keep = self._id_keep()  # one draw for inputs and outputs
        inputs = events[:, :-1]  # (B, W-1, 5)
        real = inputs[..., ITEM] > 0  # (B, W-1); left padding: a real input has a real target
        users = self.user_states(inputs, keep)[real]  # (M, S)
        items = self.output_vectors(keep)  # (N, S)
        bias = self.biases(keep)  # (N,)
        width = inputs.shape[1]
        total = users.new_zeros(())
        weight = users.new_zeros(())
        targets = []  # (M,) per step ahead, 0 where the window has ended
        for ahead in range(1, self.settings.targets_ahead + 1):
            later = events[:, ahead:, ITEM]  # (B, W-ahead): the item `ahead` steps on
            targets.append(F.pad(later, (0, width - later.shape[1]))[real])  # (M,)
        hidden = ~self.known  # (N,) or (M, N): items no position may answer
        if self.settings.exclude_seen:
            before = prior if self.settings.seen_history else None
            hidden = hidden | self._seen(
                inputs[..., ITEM], real, torch.stack(targets, dim=1), before
            )
        logp = None
        if not self.settings.negatives:
            logits = (users @ items.T + bias).masked_fill(hidden, float("-inf"))  # (M, N)
            logp = torch.log_softmax(logits, dim=-1)  # (M, N)
        else:
            negatives, log_q = self._negatives()
            excluded = hidden[..., negatives] if hidden.dim() == 2 else None  # (M, k)
        for ahead, later in enumerate(targets, start=1):
            has = later > 0  # (M,)
            if not bool(has.any()):
                break
            target = (later - 1).clamp(min=0)  # (M,)
            if logp is not None:
                nll = -logp.gather(1, target[:, None])[:, 0]  # (M,)
            else:
                nll = self._sampled_nll(
                    users, target, items, bias, negatives, log_q, excluded
                )  # (M,)
            w = 1.0 / ahead
            total = total + w * nll[has].sum()
            weight = weight + w * has.sum()
        return total / weight.clamp(min=1.0)

    def _seen(
        self,
        items: torch.Tensor,
        real: torch.Tensor,
        targets: torch.Tensor,
        prior: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """bool (M, N): at each real position of ``items`` (B, W) the catalogue items read so far
        in its window (and in ``prior`` (B, P), read before it), except the position's own
        ``targets`` (M, A; 0 = none), which a log with repeats may hold."""
        b, w = items.shape
        read = torch.zeros(b, w, self.n_items + 1, dtype=torch.int8, device=items.device)
        read.scatter_(2, items.unsqueeze(-1), 1)  # (B, W, N+1): the item read at each position
        if prior is not None and prior.numel():  # read before the window: from position 0 on
            read[:, 0].scatter_(1, prior, 1)
        seen = read.cumsum(dim=1)[real][:, 1:] > 0  # (M, N): padding (column 0) dropped
        own = torch.zeros_like(seen)
        own.scatter_(1, (targets - 1).clamp(min=0), targets > 0)  # (M, N)
        return seen & ~own

    def _negatives(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``negatives`` items drawn (shared by the batch) from popularity^0.75 over the known
        items, and log of every item's expected count in such a draw (N,)."""
        k = int(self.settings.negatives)
        proposal = self.item_counts.clamp(min=1.0) ** _SAMPLING_POWER * self.known.float()  # (N,)
        proposal = proposal / proposal.sum()
        negatives = torch.multinomial(proposal, k, replacement=True)  # (k,)
        return negatives, torch.log(proposal.clamp(min=1e-12) * k)

    @staticmethod
    def _sampled_nll(
        users: torch.Tensor,
        target: torch.Tensor,
        items: torch.Tensor,
        bias: torch.Tensor,
        negatives: torch.Tensor,
        log_q: torch.Tensor,
        excluded: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sampled softmax (M,): the target against the shared negatives, every logit corrected
        by -log of its expected count in the sample (logQ), so that the estimate is unbiased for
        the full softmax; a negative that is the target itself, or ``excluded`` for its row
        (bool (M, k)), is not counted against it."""
        pos = (users * items[target]).sum(-1) + bias[target] - log_q[target]  # (M,)
        neg = users @ items[negatives].T + bias[negatives] - log_q[negatives]  # (M, k)
        drop = negatives[None, :] == target[:, None]  # (M, k)
        if excluded is not None:
            drop = drop | excluded
        neg = neg.masked_fill(drop, float("-inf"))
        logits = torch.cat([pos[:, None], neg], dim=1)  # (M, 1 + k)
        return -torch.log_softmax(logits, dim=-1)[:, 0]

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def score_last(self, events: torch.Tensor) -> torch.Tensor:
        """(B, N) float32 scores of every item after the last event of each left-padded row."""
        keep = self.known.float()
        users = self.user_states(events, keep)[:, -1]  # (B, S)
        return users @ self.output_vectors(keep).T + self.biases()  # (B, N)


def trainable_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return int(trainable), int(sum(p.numel() for p in module.parameters()))


def token_embedding_rms(model: Any) -> float:
    """Root mean square of the base LLM's input token embeddings (the scale its layers expect)."""
    weight = model.get_input_embeddings().weight.detach().float()
    return float(weight.pow(2).mean().sqrt())

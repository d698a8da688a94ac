"""SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018) in PyTorch.

The model reads a user's items oldest first and, at every position, predicts the next item:

- item embedding (catalogue index ``i`` is token ``i + 1``; token 0 is padding) plus a learned
  positional embedding, counted back from the most recent item so the last item always has the
  same position whatever the sequence length;
- ``num_layers`` pre-LayerNorm transformer blocks: causal multi-head self-attention that ignores
  padding, then a point-wise feed-forward network, each with dropout and a residual connection;
- a final LayerNorm; the logits are the hidden state times the item embedding table (tied).

Training uses cross-entropy over all catalogue items at every non-padding position of the
left-padded sequences (target = the next item). With validation cases, NDCG@10 under full
ranking (history items excluded) is checked every ``eval_every`` epochs; the best weights are
kept and training stops after ``patience`` checks without improvement.

This is the only module of the package that imports torch at import time.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from llmrec.baselines._common import encode, item_counts, ndcg_hr_at_k
from llmrec.data.catalog import Catalog
from llmrec.data.records import EvalCase, UserSequence
from llmrec.io import atomic_dir
from llmrec.recommender import Recommender, read_model_meta, write_model_meta
from llmrec.validation import check_number, config_from_dict, merge_config

logger = logging.getLogger(__name__)

#: Training batches group sequences of similar length: sort keys are lengths times a random factor
#: in [1 - jitter, 1 + jitter], so batches pad little yet change from epoch to epoch.
_BUCKET_JITTER = 0.25
#: Histories scored per forward pass in :meth:`SASRecRecommender.score`.
_SCORE_BATCH = 256


@dataclass(frozen=True)
class SASRecConfig:
    """Settings of :class:`SASRecRecommender`; the defaults were tuned on MovieLens-100K.

    ``patience`` counts validation checks (one every ``eval_every`` epochs), not epochs.
    ``num_threads`` sets torch's CPU threads during fit/score (``None``: leave torch's default).
    ``progress`` shows a tqdm bar over epochs during :meth:`SASRecRecommender.fit`.
    """

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    inner_size: int = 256
    dropout: float = 0.35
    max_len: int = 50
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    epochs: int = 200
    eval_every: int = 5
    patience: int = 5
    seed: int = 42
    num_threads: int | None = None
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "inner_size", "max_len"):
            check_number(name, getattr(self, name), minimum=1)
        for name in ("batch_size", "epochs", "eval_every", "patience"):
            check_number(name, getattr(self, name), minimum=1)
        check_number("seed", self.seed, minimum=0)
        check_number(
            "dropout", self.dropout, kind=float, minimum=0.0, maximum=1.0, exclusive_max=True
        )
        check_number("lr", self.lr, kind=float, minimum=0.0, exclusive_min=True)
        check_number("weight_decay", self.weight_decay, kind=float, minimum=0.0)
        if self.num_threads is not None:
            check_number("num_threads", self.num_threads, minimum=1)
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size must be divisible by num_heads, got hidden_size={self.hidden_size} "
                f"and num_heads={self.num_heads}; pick num_heads among the divisors of hidden_size"
            )
        if not isinstance(self.progress, bool):
            raise ValueError(f"progress must be True or False, got {self.progress!r}")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(
                f"device must name a torch device such as 'cpu' or 'cuda:0', got {self.device!r}"
            ) from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"device is {self.device!r} but CUDA is not available here; set device='cpu'"
            )


# --------------------------------------------------------------------------- network
class _Block(nn.Module):
    """Pre-LN transformer block: causal self-attention, then a point-wise feed-forward net."""

    def __init__(self, hidden: int, heads: int, inner: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.ffn_norm = nn.LayerNorm(hidden)
        self.ffn_in = nn.Linear(hidden, inner)
        self.ffn_out = nn.Linear(inner, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``x`` (B, L, D); ``allowed`` (B, 1, L, L) bool, True where query i may see key j."""
        b, length, d = x.shape
        qkv = self.qkv(self.attn_norm(x))  # (B, L, 3D)
        qkv = qkv.view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, H, L, D/H)
        # No dropout on the attention weights: on CPU its (B, H, L, L) random mask cost about a
        # third of a training step, and the tuned defaults meet their target without it.
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # (B, H, L, D/H)
        attn = attn.transpose(1, 2).reshape(b, length, d)  # (B, L, D)
        x = x + self.dropout(self.attn_out(attn))  # (B, L, D)
        ffn = self.ffn_out(self.dropout(F.gelu(self.ffn_in(self.ffn_norm(x)))))  # (B, L, D)
        return x + self.dropout(ffn)  # (B, L, D)


class SASRecNet(nn.Module):
    """The SASRec network over ``n_items`` catalogue items (tokens 1..n_items, 0 = padding)."""

    def __init__(self, n_items: int, config: SASRecConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.max_len = config.max_len
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(config.max_len, d)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            _Block(d, config.num_heads, config.inner_size, config.dropout)
            for _ in range(config.num_layers)
        )
        self.final_norm = nn.LayerNorm(d)
        # Training counts: the scores for an empty history. Saved with the weights.
        self.register_buffer("item_counts", torch.zeros(n_items))  # (N,)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, D) for left-padded ``tokens`` (B, L), L <= max_len."""
        length = tokens.shape[1]
        valid = tokens > 0  # (B, L)
        positions = torch.arange(self.max_len - length, self.max_len, device=tokens.device)  # (L,)
        x = self.item_emb(tokens) + self.pos_emb(positions)[None]  # (B, L, D)
        x = self.emb_dropout(x) * valid[..., None]  # (B, L, D)
        causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()  # (L, L)
        diagonal = torch.eye(length, dtype=torch.bool, device=tokens.device)  # (L, L)
        # A query sees earlier real items; a padding query sees only itself (never an empty row).
        allowed = causal[None] & (valid[:, None, :] | diagonal[None])  # (B, L, L)
        allowed = allowed[:, None]  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, allowed) * valid[..., None]  # (B, L, D)
        return self.final_norm(x)  # (B, L, D)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores (..., N) of every catalogue item for hidden states (..., D)."""
        return hidden @ self.item_emb.weight[1:].T  # (..., N)


# --------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Use ``n`` CPU threads inside the block (``None``: leave the setting alone)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _left_pad(sequences: Sequence[np.ndarray], width: int) -> np.ndarray:
    """Tokens (len(sequences), width): each sequence's last ``width`` tokens, right-aligned."""
    out = np.zeros((len(sequences), width), dtype=np.int64)  # (B, W)
    for row, seq in enumerate(sequences):
        tail = seq[-width:] if len(seq) else seq
        if len(tail):
            out[row, width - len(tail) :] = tail
    return out


def _training_windows(encoded: Sequence[np.ndarray], max_len: int) -> list[np.ndarray]:
    """Token windows (catalogue index + 1) of at most ``max_len + 1`` items to train on.

    A window of ``w`` items gives ``w - 1`` (input, next item) pairs. Sequences longer than
    ``max_len + 1`` are cut from the end into windows that overlap by one item, so every
    transition of every sequence is a training target exactly once.
    """
    windows = []
    for seq in encoded:
        end = len(seq)
        while end >= 2:
            windows.append(seq[max(0, end - max_len - 1) : end] + 1)
            end -= max_len
    return windows


def _length_batches(
    samples: Sequence[np.ndarray], batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Batches of sample rows in a random order, grouping sequences of similar length.

    Rows are sorted by length times random noise, cut into batches, and the batches shuffled:
    batches pad less than purely random ones, yet their composition changes every epoch.
    """
    lengths = np.array([len(s) for s in samples], dtype=np.float64)  # (S,)
    jitter = rng.uniform(1.0 - _BUCKET_JITTER, 1.0 + _BUCKET_JITTER, size=len(samples))  # (S,)
    order = np.argsort(lengths * jitter, kind="stable")  # (S,)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


# --------------------------------------------------------------------------- recommender
class SASRecRecommender(Recommender):
    """SASRec: a causal transformer over the user's item sequence; see the module docstring."""

    name: ClassVar[str] = "sasrec"
    config_class: ClassVar[type] = SASRecConfig

    def __init__(self, config: SASRecConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config: SASRecConfig = merge_config(SASRecConfig, config, overrides, self.name)
        self.net: SASRecNet | None = None
        #: Per-evaluation history of the last fit: dicts with epoch, loss, valid NDCG@10, HR@10.
        self.history: list[dict[str, float]] = []

    @property
    def device(self) -> torch.device:
        return torch.device(self.config.device)

    # ---------------------------------------------------------------- fitting
    def fit(
        self,
        train: Sequence[UserSequence],
        catalog: Catalog,
        valid: Sequence[EvalCase] | None = None,
    ) -> SASRecRecommender:
        """Train on ``train``; with ``valid``, early-stop on NDCG@10 and keep the best weights."""
        cfg = self.config
        n_items = len(catalog)
        encoded = encode(train, catalog)
        samples = _training_windows(encoded, cfg.max_len)
        if not samples:
            raise ValueError("no training sequence has two or more items; SASRec cannot learn")
        valid_cases = list(valid) if valid else []
        valid_tokens = [t + 1 for t in encode([c.history for c in valid_cases], catalog)]

        device = self.device
        rng = np.random.default_rng(cfg.seed)
        devices = [device.index or 0] if device.type == "cuda" else []
        self.catalog = catalog
        self.history = []
        with _torch_threads(cfg.num_threads), torch.random.fork_rng(devices=devices):
            torch.manual_seed(cfg.seed)
            net = SASRecNet(n_items, cfg).to(device)
            net.item_counts.copy_(torch.from_numpy(item_counts(encoded, n_items)))
            self.net = net
            optimizer = torch.optim.AdamW(
                net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
            )
            logger.info(
                "sasrec: %d training sequences, %d items, %d parameters, %d validation cases",
                len(samples),
                n_items,
                sum(p.numel() for p in net.parameters()),
                len(valid_cases),
            )
            best_ndcg, best_state, bad_checks = -1.0, None, 0
            start = time.perf_counter()
            bar = tqdm(
                range(1, cfg.epochs + 1), desc="sasrec", unit="epoch", disable=not cfg.progress
            )
            for epoch in bar:
                loss = self._train_epoch(net, optimizer, samples, rng)
                postfix = {"loss": f"{loss:.4f}"}
                if valid_cases and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
                    scores = self._score_tokens(valid_tokens)  # (V, N)
                    ndcg, hr = ndcg_hr_at_k(scores, valid_cases, catalog, k=10)
                    self.history.append(
                        {"epoch": epoch, "loss": loss, "valid_ndcg@10": ndcg, "valid_hr@10": hr}
                    )
                    logger.info(
                        "sasrec epoch %d: loss %.4f, valid NDCG@10 %.4f, HR@10 %.4f (%.0f s)",
                        epoch,
                        loss,
                        ndcg,
                        hr,
                        time.perf_counter() - start,
                    )
                    if ndcg > best_ndcg:
                        best_ndcg, bad_checks = ndcg, 0
                        best_state = copy.deepcopy(net.state_dict())
                    else:
                        bad_checks += 1
                    if bad_checks >= cfg.patience:
                        logger.info(
                            "sasrec: no improvement in %d checks, stopping at epoch %d",
                            bad_checks,
                            epoch,
                        )
                        break
                if best_ndcg >= 0:
                    postfix["best_ndcg@10"] = f"{best_ndcg:.4f}"
                bar.set_postfix(postfix)
            bar.close()
            if best_state is not None:
                net.load_state_dict(best_state)
                logger.info("sasrec: restored the best weights (valid NDCG@10 %.4f)", best_ndcg)
        net.eval()
        return self

    def _train_epoch(
        self,
        net: SASRecNet,
        optimizer: torch.optim.Optimizer,
        samples: list[np.ndarray],
        rng: np.random.Generator,
    ) -> float:
        """One pass over ``samples`` in a random order; returns the mean loss per target."""
        net.train()
        device = self.device
        total_loss, total_targets = 0.0, 0
        for rows in _length_batches(samples, self.config.batch_size, rng):
            batch = [samples[i] for i in rows]
            width = max(len(s) for s in batch)
            tokens = torch.from_numpy(_left_pad(batch, width)).to(device)  # (B, W)
            inputs, targets = tokens[:, :-1], tokens[:, 1:]  # (B, W-1) each
            mask = inputs > 0  # (B, W-1); left padding, so a real input has a real target
            hidden = net.hidden(inputs)[mask]  # (M, D)
            loss = F.cross_entropy(net.logits(hidden), targets[mask] - 1)  # scalar
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * hidden.shape[0]
            total_targets += hidden.shape[0]
        return total_loss / max(total_targets, 1)

    # ---------------------------------------------------------------- scoring
    def known_items(self) -> np.ndarray | None:
        """Items seen in training; the others only ever appeared as softmax negatives."""
        return None if self.net is None else self.net.item_counts.cpu().numpy() > 0

    def score(self, histories: Sequence[UserSequence]) -> np.ndarray:
        """Scores (n, N) float32 from each history's last ``max_len`` items.

        An empty history gets the training popularity counts.
        """
        catalog = self._require_fitted()
        tokens = [t + 1 for t in encode(histories, catalog)]
        with _torch_threads(self.config.num_threads):
            return self._score_tokens(tokens)

    def _score_tokens(self, tokens: Sequence[np.ndarray]) -> np.ndarray:
        """Scores (n, N) float32 for token sequences (catalogue index + 1)."""
        net = self._require_net()
        n_items = net.item_counts.shape[0]
        out = np.empty((len(tokens), n_items), dtype=np.float32)  # (n, N)
        was_training = net.training
        net.eval()
        step = _SCORE_BATCH
        with torch.no_grad():
            popularity = net.item_counts.float().cpu().numpy()  # (N,)
            for begin in range(0, len(tokens), step):
                batch = list(tokens[begin : begin + step])
                width = min(max([len(s) for s in batch] + [1]), self.config.max_len)
                padded = torch.from_numpy(_left_pad(batch, width)).to(self.device)  # (B, W)
                last = net.hidden(padded)[:, -1]  # (B, D)
                scores = net.logits(last).float().cpu().numpy()  # (B, N)
                empty = np.array([len(s) == 0 for s in batch])  # (B,)
                scores[empty] = popularity
                out[begin : begin + len(batch)] = scores
        net.train(was_training)
        return out

    def _require_net(self) -> SASRecNet:
        self._require_fitted()
        if self.net is None:
            raise RuntimeError("SASRecRecommender has no network: call fit() or load() first")
        return self.net

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``model.json`` (config) and ``model.pt`` (state dict) to the folder ``path``."""
        catalog = self._require_fitted()
        net = self._require_net()
        with atomic_dir(path) as tmp:
            write_model_meta(tmp, self.name, catalog, dataclasses.asdict(self.config))
            state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
            torch.save(state, tmp / "model.pt")
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], catalog: Catalog) -> SASRecRecommender:
        """Read a model written by :meth:`save`; refuse one fitted on another catalogue.

        A model saved on a CUDA device is loaded on the CPU when CUDA is not available here.
        """
        folder = Path(path)
        meta = read_model_meta(folder, cls.name, catalog)
        values = dict(meta.get("config", {}))
        device = str(values.get("device", "cpu"))
        if device.startswith("cuda") and not torch.cuda.is_available():
            logger.warning("sasrec: %s was saved on %s; loading it on the CPU", folder, device)
            values["device"] = "cpu"
        model = cls(config_from_dict(SASRecConfig, values, cls.name))
        net = SASRecNet(len(catalog), model.config)
        state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        model.net = net.to(model.device).eval()
        model.catalog = catalog
        return model

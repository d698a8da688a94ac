"""Training losses of the listwise ranker.

:func:`ranking_loss` reads a :class:`~llmrec.finetune.collate.RankCollator` batch: for rank rows
the cross-entropy of the target's label among the candidates' labels at the answer position
(exactly what one-pass ranking reads at inference), for reason rows the causal-LM loss on the
answer tokens; the mean over the batch weights each row alike. :func:`orthogonal_penalty` is
AdaLoRA's regulariser, added by the trainer.

Example::

    batch = RankCollator(tokenizer)(rows)
    loss = ranking_loss(model, batch)  # a scalar tensor
"""

from __future__ import annotations

from typing import Any


def ranking_loss(model: Any, batch: dict[str, Any], one_forward: bool = False) -> Any:
    """Mean loss over the batch: listwise cross-entropy for rank rows, LM loss for reason rows.

    A batch holding both kinds takes two forward passes (logits at the answer position only for
    the rank rows, every position for the reason rows), or with ``one_forward`` a single pass
    over the whole batch with every position's logits: a model wrapped in
    DistributedDataParallel (a multi-process run) must run forward the same number of times on
    every process, whatever kinds of rows each one's batch holds."""
    import torch

    kind = batch["kind"]  # (B,)
    rank = kind == 1  # (B,)
    n = len(kind)
    if one_forward and rank.any() and (~rank).any():
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            use_cache=False,
        )
        logits = out.logits  # (B, T, V)
        total = _rank_loss(logits[rank][:, -1, :].float(), batch, rank) * rank.sum() / n
        return total + _lm_loss(logits[~rank], batch["lm_labels"][~rank]) * (~rank).sum() / n
    total = torch.zeros((), device=batch["input_ids"].device)
    if rank.any():
        out = model(
            input_ids=batch["input_ids"][rank],
            attention_mask=batch["attention_mask"][rank],
            logits_to_keep=1,
            use_cache=False,
        )
        # (R, V): the answer position of the R rank rows
        total = total + _rank_loss(out.logits[:, -1, :].float(), batch, rank) * rank.sum() / n
    if (~rank).any():
        out = model(
            input_ids=batch["input_ids"][~rank],
            attention_mask=batch["attention_mask"][~rank],
            labels=batch["lm_labels"][~rank],
            use_cache=False,
        )
        total = total + out.loss.float() * (~rank).sum() / n
    return total


def _rank_loss(logits: Any, batch: dict[str, Any], rank: Any) -> Any:
    """Cross-entropy of the target's label among the candidates' labels, from the answer
    position's logits (R, V) of the rank rows."""
    import torch.nn.functional as F

    picked = logits.gather(1, batch["label_ids"][rank])  # (R, L)
    if "prior" in batch:  # a residual ranker: the LLM corrects the retriever's order
        prior = batch["prior"][rank].to(picked.device)  # (R, L)
        picked = (picked + prior) * batch["scale"].to(picked.device)
    picked = picked.masked_fill(~batch["label_mask"][rank], float("-inf"))
    return F.cross_entropy(picked, batch["target"][rank])


def _lm_loss(logits: Any, labels: Any) -> Any:
    """The causal-LM loss transformers computes from ``labels``: the mean cross-entropy of each
    labelled token (-100: not counted) given the positions before it."""
    import torch.nn.functional as F

    vocab = logits.shape[-1]
    shifted = logits[:, :-1, :].float().reshape(-1, vocab)
    return F.cross_entropy(shifted, labels[:, 1:].reshape(-1).to(logits.device), ignore_index=-100)


def orthogonal_penalty(model: Any, weight: float) -> Any:
    """AdaLoRA's orthogonality regulariser on P (lora_A) and Q (lora_B), ``weight`` times the mean
    of ``||P P^T - I||_F`` and ``||Q^T Q - I||_F``; None without trainable factors or weight. peft
    adds it only when the model computes the loss itself, which the ranking loss does not."""
    import torch

    terms = []
    for name, param in model.named_parameters():
        if not param.requires_grad or ("lora_A" not in name and "lora_B" not in name):
            continue
        # lora_A: (r, in) -> (r, r); lora_B: (out, r) -> (r, r)
        cov = param @ param.T if "lora_A" in name else param.T @ param
        eye = torch.eye(cov.shape[0], device=cov.device, dtype=cov.dtype)
        terms.append(torch.linalg.norm(cov - eye, ord="fro"))
    if not terms or not weight:
        return None
    return weight * torch.stack(terms).mean()

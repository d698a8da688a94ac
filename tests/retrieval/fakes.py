"""Helpers of the retrieval tests: tiny offline sentence-transformers and a few movies."""

from __future__ import annotations

import string
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from llmrec.data.catalog import Catalog
from llmrec.data.records import Item, UserSequence

#: Whole words in the tiny vocabulary; anything else is spelled with single-character pieces.
_WORDS = (
    "recently watched genres comedy animation drama horror action toy story movie film funny "
    "kids war space alien night"
).split()


def build_tiny_model(folder: Path, seed: int) -> Path:
    """Save a 2-layer, 32-wide BERT sentence-transformer (random weights) under ``folder``."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    chars = string.ascii_lowercase + string.digits
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += list(chars + string.punctuation) + [f"##{c}" for c in chars] + _WORDS
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(vocab_file))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    hf_dir = folder / "hf"
    BertModel(config).save_pretrained(str(hf_dir))
    tokenizer.save_pretrained(str(hf_dir))
    transformer = Transformer(str(hf_dir), max_seq_length=128)
    model = SentenceTransformer(modules=[transformer, Pooling(32, "mean")], device="cpu")
    st_dir = folder / "st"
    model.save(str(st_dir))
    return st_dir


MOVIES = [
    Item("1", "Toy Story", 1995, ("Animation", "Children's", "Comedy")),
    Item("2", "Heat", 1995, ("Action", "Crime", "Thriller")),
    Item("3", "Schindler's List", 1993, ("Drama", "War")),
    Item("4", "Alien", 1979, ("Horror", "Sci-Fi")),
    Item("5", "Sense and Sensibility", 1995, ("Drama", "Romance")),
    Item("6", "Night of the Living Dead", 1968, ("Horror",)),
]


def make_catalog(items: Sequence[Item]) -> Catalog:
    """A catalogue holding ``items`` in order."""
    return Catalog(
        pd.DataFrame(
            {
                "item_id": [i.item_id for i in items],
                "title": [i.title for i in items],
                "year": [i.year for i in items],
                "categories": [list(i.categories) for i in items],
                "description": [i.description for i in items],
            }
        )
    )


def make_sequence(user_id: str, items: Sequence[str]) -> UserSequence:
    """A user's sequence of the given item ids, one time step apart."""
    return UserSequence(user_id, tuple(items), tuple(float(t) for t in range(len(items))))


def numbered_catalog(n: int = 5) -> Catalog:
    """Items "0" .. "n-1", titled by their ids, with no year and no categories."""
    ids = [str(i) for i in range(n)]
    return Catalog(
        pd.DataFrame(
            {
                "item_id": ids,
                "title": ids,
                "year": pd.array([None] * n, dtype="Int64"),
                "categories": [[] for _ in ids],
                "description": None,
            }
        )
    )


def numbered_sequence(
    user: str, items: list[int], times: list[float] | None = None
) -> UserSequence:
    """``user``'s sequence of the numbered items, at ``times`` (default: 0, 1, 2, ...)."""
    times = times if times is not None else [float(t) for t in range(len(items))]
    return UserSequence(user, tuple(str(i) for i in items), tuple(times))

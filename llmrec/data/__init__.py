"""Data layer: readers, validation, multi-view behaviour sequences and splits. Needs no torch."""

from llmrec.data.catalog import Catalog
from llmrec.data.dataset import RecDataset
from llmrec.data.errors import DataError
from llmrec.data.loaders import BUILTIN_DATASETS, load_builtin, load_files, open_dataset
from llmrec.data.records import EvalCase, Interaction, Item, User, UserSequence
from llmrec.data.schema import ColumnMapping, LoadOptions
from llmrec.data.sequences import Dedup, SequenceOptions, apply_options
from llmrec.data.splits import Split, SplitKind, leave_one_out, make_split, time_split

__all__ = [
    "BUILTIN_DATASETS",
    "Catalog",
    "ColumnMapping",
    "DataError",
    "Dedup",
    "EvalCase",
    "Interaction",
    "Item",
    "LoadOptions",
    "RecDataset",
    "SequenceOptions",
    "Split",
    "SplitKind",
    "User",
    "UserSequence",
    "apply_options",
    "leave_one_out",
    "load_builtin",
    "load_files",
    "make_split",
    "open_dataset",
    "time_split",
]

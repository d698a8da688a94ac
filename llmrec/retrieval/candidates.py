"""The record the retrieval stage hands on; it lives in :mod:`llmrec.data.records` with the other
records between stages and is re-exported here so ``llmrec.retrieval.candidates`` keeps working."""

from llmrec.data.records import Candidate, ViewEvidence

__all__ = ["Candidate", "ViewEvidence"]

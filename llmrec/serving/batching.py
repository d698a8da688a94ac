"""Dynamic batching: concurrent requests share forward passes, one worker thread owns the models.

Request threads submit jobs (score these rank prompts with model M; generate from these texts) and
wait on a future with their deadline. The worker takes the oldest job; for a scoring job it keeps
collecting scoring jobs for the same model for up to ``wait_ms`` or until ``max_batch`` prompts,
runs them in one :meth:`RankModel.score` call and hands each request its rows. The queue is
bounded: a full queue refuses the job at once (:class:`Overloaded`, answered 429), and a job whose
request gave up (timeout, disconnect) is skipped, not computed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from llmrec.ranking.backends import RankModel
from llmrec.serving.config import Batching

logger = logging.getLogger(__name__)


class Overloaded(RuntimeError):
    """The queue is full: the caller should answer 429 and the client retry later."""


class DeadlineExceeded(TimeoutError):
    """The request ran out of time while waiting for the model."""


@dataclass
class _Job:
    kind: str  # "score" | "items" | "generate"
    model: str
    items: list[Any]  # prompts (score), (history, item ids) pairs (items) or texts (generate)
    options: dict[str, Any] = field(default_factory=dict)
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    batches: int = 0
    prompts: int = 0
    largest: int = 0
    generations: int = 0
    skipped: int = 0


class Batcher:
    def __init__(self, models: dict[str, RankModel], config: Batching | None = None) -> None:
        self.models = models
        self.config = config or Batching()
        self.stats = BatchStats()
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=self.config.max_queue)
        self._held: deque[_Job | None] = deque()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Batcher:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="llmrec-batcher", daemon=True)
            self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the queued jobs, then stop the worker."""
        if self._thread is None:
            return
        self._stopping.set()
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            logger.warning("batcher queue still full at shutdown")
        self._thread.join(timeout)
        self._thread = None

    # ------------------------------------------------------------------ requests
    def submit(self, job: _Job) -> Future:
        if self._stopping.is_set() or not self.running:
            raise Overloaded("the model worker is not running (shutting down)")
        if job.model not in self.models:
            raise KeyError(job.model)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Overloaded(
                f"{self.config.max_queue} jobs are already waiting for the model"
            ) from None
        return job.future

    @staticmethod
    def wait(future: Future, deadline: float | None) -> Any:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            future.cancel()  # the worker skips it if it has not started
            raise DeadlineExceeded("the request timed out waiting for the model") from None

    def score(self, model: str, prompts: Sequence[Any], deadline: float | None = None) -> list:
        if not prompts:
            return []
        return self.wait(self.submit(_Job("score", model, list(prompts))), deadline)

    def score_items(
        self, model: str, pairs: Sequence[tuple[Any, Any]], deadline: float | None = None
    ) -> list:
        """Item scores of a model that scores items (a next-item LLM): (history, item ids)
        pairs, batched with other requests' pairs for the same model."""
        if not pairs:
            return []
        return self.wait(self.submit(_Job("items", model, list(pairs))), deadline)

    def generate(
        self,
        model: str,
        texts: Sequence[str],
        max_new_tokens: int,
        min_new_tokens: int = 0,
        sample_seed: int | None = None,
        deadline: float | None = None,
    ) -> list[str]:
        if not texts:
            return []
        options = {
            "max_new_tokens": max_new_tokens,
            "min_new_tokens": min_new_tokens,
            "sample_seed": sample_seed,
        }
        return self.wait(self.submit(_Job("generate", model, list(texts), options)), deadline)

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        while True:
            job = self._held.popleft() if self._held else self._queue.get()
            if job is None:  # the stop sentinel: everything queued before it is done
                break
            if not job.future.set_running_or_notify_cancel():
                self.stats.skipped += 1
                continue
            if job.kind in ("score", "items"):
                self._score_batch(job)
            else:
                self._generate(job)

    def _score_batch(self, first: _Job) -> None:
        jobs = [first]
        size = len(first.items)
        end = time.monotonic() + self.config.wait_ms / 1000.0
        stop_seen = False
        while size < self.config.max_batch:
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            if self._held:  # an older job waits: serve it next, in order
                break
            try:
                job = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if job is None:
                stop_seen = True
                break
            fits = size + len(job.items) <= self.config.max_batch
            if job.kind != first.kind or job.model != first.model or not fits:
                self._held.append(job)
                break
            if not job.future.set_running_or_notify_cancel():
                self.stats.skipped += 1
                continue
            jobs.append(job)
            size += len(job.items)
        prompts = [p for job in jobs for p in job.items]
        try:
            model = self.models[first.model]
            if first.kind == "items":
                histories, lists = [h for h, _ in prompts], [ids for _, ids in prompts]
                scores = model.score_items(histories, lists)  # type: ignore[attr-defined]
            else:
                scores = model.score(prompts)
        except Exception as exc:  # noqa: BLE001 - handed to every waiting request
            logger.exception("scoring a batch of %d prompts failed", len(prompts))
            for job in jobs:
                job.future.set_exception(exc)
        else:
            start = 0
            for job in jobs:
                job.future.set_result(scores[start : start + len(job.items)])
                start += len(job.items)
            self.stats.batches += 1
            self.stats.prompts += len(prompts)
            self.stats.largest = max(self.stats.largest, len(prompts))
        if stop_seen:
            self._held.append(None)

    def _generate(self, job: _Job) -> None:
        try:
            texts = self.models[job.model].generate(job.items, **job.options)
        except Exception as exc:  # noqa: BLE001
            logger.exception("generation failed")
            job.future.set_exception(exc)
        else:
            self.stats.generations += 1
            job.future.set_result(texts)


class RoutedModel:
    """A model seen through the batcher, with one request's deadline: a :class:`RankModel` that
    the ranking pipeline scores and writes reasons with, so concurrent requests share batches."""

    def __init__(self, batcher: Batcher, name: str, deadline: float | None) -> None:
        self.batcher = batcher
        self.name = name
        self.deadline = deadline
        self.info = batcher.models[name].info
        self.builder = batcher.models[name].builder
        #: a next-item model is asked for item scores, not prompt scores (``item_scores``)
        self.scores_items = bool(getattr(batcher.models[name], "scores_items", False))

    def score(self, prompts: Sequence[Any], progress: bool = False) -> list:
        return self.batcher.score(self.name, prompts, self.deadline)

    def score_items(
        self, histories: Sequence[Any], item_lists: Sequence[Any], progress: bool = False
    ) -> list:
        pairs = list(zip(histories, item_lists, strict=True))
        return self.batcher.score_items(self.name, pairs, self.deadline)

    def generate(
        self,
        texts: Sequence[str],
        max_new_tokens: int,
        min_new_tokens: int = 0,
        sample_seed: int | None = None,
    ) -> list[str]:
        return self.batcher.generate(
            self.name, texts, max_new_tokens, min_new_tokens, sample_seed, self.deadline
        )

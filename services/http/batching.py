"""Micro-batching: concurrent requests share one forward pass, behind bounded admission.

    request ─ admit(n) ─► read, parse ─► run(items) ─┐            ┌─► results, per item
    request ─ admit(n) ─► … ───────────► run(items) ─┼─► queue ─► worker thread: process(batch)
    request ─ admit(n) ✗ 503 + Retry-After (full)     ┘   (≤ max_batch items, waits ≤ max_wait)

* **Admission first.** A request reserves room for its items before its body is read; when
  ``max_pending`` items are already admitted it is refused at once (``OverloadedError``, 503),
  so overload never turns into a growing queue, seconds of latency and gigabytes of bodies.
* **Gathering.** The worker takes up to ``max_batch`` queued items. It waits up to
  ``max_wait_s`` for more only while admitted requests have not submitted yet: a lone client
  never waits, and under load the batch fills while the previous one runs.
* **One worker thread** runs ``process`` (the network, the entropy coder): torch releases the GIL,
  so the event loop keeps serving HTTP meanwhile.
* **Per-item errors.** ``process`` returns one result per item, an exception instance where that
  item failed; a bad item fails its own request only, never its neighbours in the batch.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Generic, TypeVar

from latentwire_http.errors import OverloadedError
from latentwire_http.settings import ServiceSettings

__all__ = ["Admission", "MicroBatcher"]

log = logging.getLogger("latentwire.http")
In = TypeVar("In")
Out = TypeVar("Out")
_STOP = object()  # tells the worker thread to finish


class MicroBatcher(Generic[In, Out]):
    """Gathers items of concurrent requests into batches for ``process`` on one worker thread.

    The worker thread takes the next batch itself, straight from a thread-safe queue: starting a
    batch never waits for a turn of the event loop, which is busy with HTTP under load.

    >>> batcher = MicroBatcher(lambda xs: [x * 2 for x in xs], max_batch=64, max_wait_s=0.002,
    ...                        max_pending=1024, name="doubler")
    >>> async def handle(x):
    ...     with batcher.admit() as admission:
    ...         (result,) = await admission.run([x])
    ...         return result
    """

    def __init__(
        self,
        process: Callable[[list[In]], Sequence[Out | Exception]],
        *,
        max_batch: int,
        max_wait_s: float,
        max_pending: int,
        name: str,
    ) -> None:
        if max_batch < 1 or max_pending < 1 or max_wait_s < 0:
            raise ValueError("max_batch and max_pending must be ≥ 1, max_wait_s ≥ 0")
        self.process = process
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_pending = max_pending
        self.name = name
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._reserved = 0  # items admitted and not yet released (event-loop thread only)
        # Of those, items their requests have not handed over yet. Written by the event loop,
        # read by the worker as a hint: whether to wait for company is a guess, never a hazard.
        self._unsubmitted = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._unanswered: set[asyncio.Future[list[Out | Exception]]] = set()
        #: Called on the worker thread after each pass with its size and seconds (e.g. metrics).
        self.on_pass: Callable[[int, float], None] | None = None

    @classmethod
    def from_settings(
        cls, process: Callable[[list[In]], Sequence[Out | Exception]], settings: ServiceSettings, *, name: str
    ) -> MicroBatcher[In, Out]:
        """A batcher sized by a service's ``batch_size``, ``batch_wait_ms`` and ``max_pending``."""
        return cls(
            process,
            max_batch=settings.batch_size,
            max_wait_s=settings.batch_wait_ms / 1000,
            max_pending=settings.max_pending,
            name=name,
        )

    # ------------------------------------------------------------------ admission

    @property
    def pending(self) -> int:
        """Items admitted and not finished: queued, in the worker, or still being read."""
        return self._reserved

    def admit(self, items: int = 1) -> Admission[In, Out]:
        """Reserve room for ``items``; ``OverloadedError`` (503) at once if there is none."""
        self._reserve(items)
        return Admission(self, items)

    def _reserve(self, items: int) -> None:
        if self._reserved + items > self.max_pending:
            raise OverloadedError(
                f"the {self.name} is at capacity ({self._reserved} of {self.max_pending} items admitted)",
                retry_after=1,
            )
        self._reserved += items
        self._unsubmitted += items

    def _release(self, reserved: int, unsubmitted: int) -> None:
        self._reserved -= reserved
        self._unsubmitted -= unsubmitted

    # ------------------------------------------------------------------ the worker

    def start(self) -> None:
        """Start the worker thread (from the running event loop, e.g. in the app's lifespan)."""
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._work, name=f"latentwire-{self.name}", daemon=True)
            self._thread.start()

    async def close(self) -> None:
        """Stop the worker after its current batch; items still queued fail with OverloadedError.

        The server drains in-flight requests before it closes the batcher, so normally nothing
        is left; what is (a drain that timed out) gets an answer rather than hanging.
        """
        if self._thread is not None:
            self._closing = True
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join)  # never block the event loop
            self._thread = None
        stopping = OverloadedError(f"the {self.name} is shutting down")
        for future in self._unanswered:
            if not future.done():
                future.set_exception(stopping)
        self._unanswered.clear()

    async def _submit(self, items: Sequence[In]) -> list[Out | Exception]:
        if self._thread is None or self._loop is None:
            raise RuntimeError(f"the {self.name} batcher is not started")
        future: asyncio.Future[list[Out | Exception]] = self._loop.create_future()
        self._unanswered.add(future)
        self._unsubmitted -= len(items)
        self._queue.put(_Entry(list(items), future))  # one entry per request, not per item
        try:
            return await future
        finally:
            self._unanswered.discard(future)

    def _next_batch(self) -> list[_Entry[In, Out]] | None:
        """Block for one request's items, then take what else is queued, waiting a little for company.

        None once asked to stop (entries queued behind the stop are left for ``close``).
        """
        first = self._queue.get()
        if first is _STOP:
            return None
        assert isinstance(first, _Entry)
        batch, size = [first], len(first.items)
        deadline = time.monotonic() + self.max_wait_s
        while size < self.max_batch:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                # Wait only while admitted requests are still on their way.
                remaining = deadline - time.monotonic()
                if self._unsubmitted <= 0 or remaining <= 0:
                    break
                try:
                    entry = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if entry is _STOP:
                self._queue.put(_STOP)  # finish this batch, stop at the next
                break
            assert isinstance(entry, _Entry)
            batch.append(entry)
            size += len(entry.items)
        return batch

    def _run(self, items: list[In]) -> Sequence[Out | Exception]:
        """``process`` over ``items`` in passes of at most ``max_batch`` (a big request is split)."""
        results: list[Out | Exception] = []
        for start in range(0, len(items), self.max_batch):
            chunk = items[start : start + self.max_batch]
            started = time.perf_counter()
            try:
                done = self.process(chunk)
                if len(done) != len(chunk):
                    raise RuntimeError(f"{self.name}: {len(chunk)} items gave {len(done)} results")
            except Exception as exc:  # a bug, not bad input: every item of the pass reports it
                log.exception("%s: a batch of %d failed", self.name, len(chunk))
                done = [exc] * len(chunk)
            results.extend(done)
            if self.on_pass is not None:
                self.on_pass(len(chunk), time.perf_counter() - started)
        return results

    def _work(self) -> None:
        assert self._loop is not None
        while (batch := self._next_batch()) is not None:
            if self._closing:  # queued before the stop: answered by close(), not processed
                continue
            results = self._run([item for entry in batch for item in entry.items])
            answers, start = [], 0
            for entry in batch:
                answers.append((entry.future, list(results[start : start + len(entry.items)])))
                start += len(entry.items)
            try:
                self._loop.call_soon_threadsafe(_answer, answers)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return


class _Entry(Generic[In, Out]):
    """One request's items in the queue, and the future its results go to."""

    __slots__ = ("future", "items")

    def __init__(self, items: list[In], future: asyncio.Future[list[Out | Exception]]) -> None:
        self.items = items
        self.future = future


def _answer(answers: list[tuple[asyncio.Future[list[Any]], list[Any]]]) -> None:
    for future, results in answers:
        if not future.done():  # its request may have been cancelled (client gone)
            future.set_result(results)


class Admission(Generic[In, Out]):
    """Room reserved in a batcher for one request's items; release it with ``with``."""

    def __init__(self, batcher: MicroBatcher[In, Out], items: int) -> None:
        self._batcher = batcher
        self._reserved = items
        self._unsubmitted = items

    def grow(self, items: int) -> None:
        """Reserve room for ``items`` more (e.g. once a multipart body is counted); may raise 503."""
        self._batcher._reserve(items)
        self._reserved += items
        self._unsubmitted += items

    async def run(self, items: Sequence[In]) -> list[Out | Exception]:
        """Hand ``items`` (at most the room reserved) to the worker; one result or exception each."""
        if len(items) > self._unsubmitted:
            raise ValueError(f"{len(items)} items, but room for {self._unsubmitted} is reserved")
        self._unsubmitted -= len(items)
        return await self._batcher._submit(items)

    def release(self) -> None:
        if self._reserved:
            self._batcher._release(self._reserved, self._unsubmitted)
            self._reserved = self._unsubmitted = 0

    def __enter__(self) -> Admission[In, Out]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

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
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Generic, TypeVar

from latentwire_http.errors import OverloadedError

__all__ = ["Admission", "MicroBatcher"]

log = logging.getLogger("latentwire.http")
In = TypeVar("In")
Out = TypeVar("Out")


class MicroBatcher(Generic[In, Out]):
    """Gathers items of concurrent requests into batches for ``process`` on one worker thread.

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
        self._queue: deque[tuple[In, asyncio.Future[Out | Exception]]] = deque()
        self._running: list[asyncio.Future[Out | Exception]] = []  # the batch in the worker
        self._reserved = 0  # items admitted and not yet released
        self._unsubmitted = 0  # of those, items their requests have not handed over yet
        self._arrived = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # forward passes so far (for logs, tests and the benchmark)
        self.items = 0

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
        if unsubmitted:
            self._arrived.set()  # a gatherer waiting for this request's items need not wait

    # ------------------------------------------------------------------ the worker

    def start(self) -> None:
        """Start the worker (inside the running event loop, e.g. in the app's lifespan)."""
        if self._worker is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"latentwire-{self.name}")
            self._worker = asyncio.get_running_loop().create_task(self._gather_forever())

    async def close(self) -> None:
        """Stop the worker; items still queued or running fail with OverloadedError.

        The server drains in-flight requests before it closes the batcher, so normally nothing
        is left; what is (a drain that timed out) gets an answer rather than hanging.
        """
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        stopping = OverloadedError(f"the {self.name} is shutting down")
        for future in [*self._running, *(future for _, future in self._queue)]:
            if not future.done():
                future.set_result(stopping)
        self._running, self._queue = [], deque()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)  # never block the event loop
            self._executor = None

    async def _submit(self, items: Sequence[In]) -> list[Out | Exception]:
        if self._worker is None:
            raise RuntimeError(f"the {self.name} batcher is not started")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self._queue.extend(zip(items, futures, strict=True))
        self._unsubmitted -= len(items)
        self._arrived.set()
        return list(await asyncio.gather(*futures))

    async def _gather_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = loop.time() + self.max_wait_s
            # Wait for company only while admitted requests are still on their way.
            while len(self._queue) < self.max_batch and self._unsubmitted > 0:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            items = [item for item, _ in batch]
            self._running = [future for _, future in batch]
            try:
                results: Sequence[Out | Exception] = await loop.run_in_executor(
                    self._executor, self.process, items
                )
                if len(results) != len(items):
                    raise RuntimeError(f"{self.name}: {len(items)} items gave {len(results)} results")
            except Exception as exc:  # a bug, not bad input: every item of the batch reports it
                log.exception("%s: a batch of %d failed", self.name, len(items))
                results = [exc] * len(items)
            self.batches += 1
            self.items += len(items)
            for future, result in zip(self._running, results, strict=True):
                if not future.done():  # its request may have been cancelled (client gone)
                    future.set_result(result)
            self._running = []


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

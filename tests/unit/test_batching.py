"""The micro-batcher: gathering, per-item errors, bounded admission, shutdown."""

from __future__ import annotations

import asyncio
import threading

import pytest

from latentwire.errors import BadCodeError
from latentwire_http.batching import MicroBatcher
from latentwire_http.errors import OverloadedError

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def doubler(seen: list[list[int]]) -> MicroBatcher[int, int]:
    def process(items: list[int]) -> list[int | Exception]:
        seen.append(list(items))
        return [BadCodeError(f"odd {x}") if x < 0 else 2 * x for x in items]

    return MicroBatcher(process, max_batch=8, max_wait_s=0.05, max_pending=32, name="doubler")


def echo(items: list[int]) -> list[int | Exception]:
    return list(items)


async def one(batcher: MicroBatcher[int, int], x: int) -> int | Exception:
    with batcher.admit() as admission:
        (result,) = await admission.run([x])
        return result


async def test_concurrent_requests_share_batches_and_keep_their_own_results() -> None:
    seen: list[list[int]] = []
    batcher = doubler(seen)
    batcher.start()
    try:
        results = await asyncio.gather(*(one(batcher, x) for x in range(20)))
    finally:
        await batcher.close()
    assert results == [2 * x for x in range(20)]
    assert sorted(x for batch in seen for x in batch) == list(range(20))
    assert len(seen) < 20 and max(len(b) for b in seen) <= 8  # gathered, and never over max_batch
    assert batcher.pending == 0


async def test_a_bad_item_fails_alone() -> None:
    seen: list[list[int]] = []
    batcher = doubler(seen)
    batcher.start()
    try:
        results = await asyncio.gather(*(one(batcher, x) for x in (1, -1, 2)))
    finally:
        await batcher.close()
    assert results[0] == 2 and results[2] == 4
    assert isinstance(results[1], BadCodeError)
    assert any(len(batch) > 1 and -1 in batch for batch in seen)  # it really shared a batch


async def test_a_lone_request_does_not_wait_for_company() -> None:
    batcher = MicroBatcher(echo, max_batch=64, max_wait_s=30.0, max_pending=64, name="echo")
    batcher.start()
    try:
        assert await asyncio.wait_for(one(batcher, 7), timeout=10.0) == 7  # not 30 s
    finally:
        await batcher.close()


async def test_admission_is_refused_at_once_when_full_and_freed_after() -> None:
    batcher = MicroBatcher(echo, max_batch=4, max_wait_s=0.0, max_pending=4, name="tiny")
    batcher.start()
    try:
        held = batcher.admit(3)
        with pytest.raises(OverloadedError) as refused:
            batcher.admit(2)
        assert refused.value.retry_after >= 1 and "capacity" in refused.value.message
        with batcher.admit(1) as admission:  # exactly full is fine
            with pytest.raises(OverloadedError):
                admission.grow(1)
            assert await admission.run([5]) == [5]
        held.release()
        assert batcher.pending == 0
        with batcher.admit(4) as admission:
            assert await admission.run([1, 2, 3, 4]) == [1, 2, 3, 4]
            with pytest.raises(ValueError, match="reserved"):
                await admission.run([5])
    finally:
        await batcher.close()


async def test_a_failing_batch_reports_to_each_of_its_items() -> None:
    def broken(items: list[int]) -> list[int | Exception]:
        raise RuntimeError("boom")

    batcher = MicroBatcher(broken, max_batch=4, max_wait_s=0.0, max_pending=8, name="broken")
    batcher.start()
    try:
        with batcher.admit(2) as admission:
            results = await admission.run([1, 2])
    finally:
        await batcher.close()
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_close_fails_what_is_still_queued() -> None:
    release = threading.Event()

    def slow(items: list[int]) -> list[int | Exception]:
        release.wait(10)
        return list(items)

    batcher = MicroBatcher(slow, max_batch=1, max_wait_s=0.0, max_pending=8, name="slow")
    batcher.start()
    first = asyncio.ensure_future(one(batcher, 1))
    second = asyncio.ensure_future(one(batcher, 2))
    await asyncio.sleep(0.05)  # the first is in the worker, the second queued behind it
    closing = asyncio.ensure_future(batcher.close())
    await asyncio.sleep(0.05)
    release.set()  # the running batch finishes; close() waits for it, never for the queue
    await closing
    assert await first == 1
    with pytest.raises(OverloadedError, match="shutting down"):
        await second


async def test_a_request_larger_than_a_batch_runs_in_passes() -> None:
    seen: list[list[int]] = []
    batcher = doubler(seen)  # max_batch=8
    batcher.start()
    try:
        with batcher.admit(20) as admission:
            assert await admission.run(list(range(20))) == [2 * x for x in range(20)]
    finally:
        await batcher.close()
    assert [len(b) for b in seen] == [8, 8, 4]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        MicroBatcher(echo, max_batch=0, max_wait_s=0.0, max_pending=1, name="x")


async def test_each_pass_is_reported_with_its_size() -> None:
    seen: list[list[int]] = []
    passes: list[tuple[int, float]] = []
    batcher = doubler(seen)  # max_batch=8
    batcher.on_pass = lambda size, seconds: passes.append((size, seconds))
    batcher.start()
    try:
        with batcher.admit(20) as admission:
            await admission.run(list(range(20)))
    finally:
        await batcher.close()
    assert [size for size, _ in passes] == [8, 8, 4]
    assert all(seconds >= 0 for _, seconds in passes)

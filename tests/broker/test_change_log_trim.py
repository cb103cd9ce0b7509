"""The change log's trim (broker.temporal.runtime): up to the consumers' smallest cursor, in pieces, on both stores."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from broker.store import Store, open_store
from broker.temporal.runtime import Trimmer, trim_once
from tests.pg import store_url

AQO = "https://smartdatamodels.org/dataModel.Environment/AirQualityObserved"
T0 = "2026-11-26T06:00:00Z"


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with store_url(request.param, tmp_path / "data" / "broker.db", "test_trim") as url:
        yield url


@dataclass
class Consumer:
    cursor: int


def run(url: str, body: Callable[[Store, list[int]], Awaitable[None]]) -> None:
    """Open the store, record the `upto` of each of its trim_changes calls (the real method runs), run body."""

    async def main() -> None:
        store = open_store(url)
        await store.open()
        calls: list[int] = []
        real = store.trim_changes

        async def trim_changes(upto_seq: int) -> int:
            calls.append(upto_seq)
            return await real(upto_seq)

        store.trim_changes = trim_changes  # type: ignore[method-assign]
        try:
            await body(store, calls)
        finally:
            await store.close()

    asyncio.run(main())


async def _insert(store: Store, first: int, n: int) -> list[int]:
    docs: list[dict[str, Any]] = [{"id": f"urn:ngsi-ld:Thing:{k}", "type": [AQO]} for k in range(first, first + n)]
    await store.insert("", docs, T0)
    return [r.seq for r in await store.changes_after(0, 10_000)]


def test_a_trim_goes_in_pieces_up_to_the_smallest_cursor(url: str) -> None:
    async def body(store: Store, calls: list[int]) -> None:
        seqs = await _insert(store, 0, 25)
        upto = seqs[22]
        trimmer = Trimmer(store, chunk=10)
        assert await trim_once(store, [Consumer(seqs[-1]), Consumer(upto)], trimmer) == 23
        assert [r.seq for r in await store.changes_after(0, 100)] == seqs[23:]
        # each call covers at most 10 seqs, from the oldest record to the cursor
        assert calls == [seqs[0] - 1 + 10, seqs[0] - 1 + 20, upto]
        calls.clear()
        # nothing new consumed: no call at all; then the next round goes on from where this one ended
        assert await trim_once(store, [Consumer(upto)], trimmer) == 0
        assert calls == []
        assert await trim_once(store, [Consumer(seqs[-1])], trimmer) == 2
        assert calls == [seqs[-1]] and await store.changes_after(0, 100) == []

    run(url, body)


def test_a_new_trimmer_starts_at_the_oldest_record_left(url: str) -> None:
    """After a restart the log starts past seq 1: the first round neither walks the seqs gone before nor skips any."""

    async def body(store: Store, calls: list[int]) -> None:
        seqs = await _insert(store, 0, 40)
        await store.trim_changes(seqs[29])  # trimmed by an earlier run of the broker
        calls.clear()
        assert await Trimmer(store, chunk=4).trim(seqs[-1]) == 10
        assert calls == [seqs[29] + 4, seqs[29] + 8, seqs[-1]]
        assert await store.changes_after(0, 100) == []
        # an empty log: nothing to delete, nothing called
        calls.clear()
        assert await Trimmer(store, chunk=4).trim(seqs[-1]) == 0
        assert calls == []

    run(url, body)


def test_no_consumer_no_trim(url: str) -> None:
    async def body(store: Store, calls: list[int]) -> None:
        await _insert(store, 0, 3)
        assert await trim_once(store, []) == 0
        assert await trim_once(store, [Consumer(0)]) == 0
        assert calls == [] and len(await store.changes_after(0, 100)) == 3

    run(url, body)

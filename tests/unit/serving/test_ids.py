"""Prediction ids: canonical, time-ordered UUIDv7s, strictly increasing in a process."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from penguins.serving.ids import COUNTER_BITS, IdClock, new_ids


def timestamp_ms(text: str) -> int:
    """Return the Unix milliseconds of a UUIDv7."""
    return uuid.UUID(text).int >> 80


def test_ids_are_canonical_version_7_uuids_of_now():
    before = time.time_ns() // 1_000_000
    ids = new_ids(1000)
    after = time.time_ns() // 1_000_000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= timestamp_ms(text) <= after + 1


def test_ids_increase_strictly_within_a_batch_and_across_batches():
    ids = [i for _ in range(50) for i in new_ids(200)] + new_ids(1)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [uuid.UUID(i).int for i in ids] == sorted(uuid.UUID(i).int for i in ids)


def test_ids_increase_across_threads_sharing_the_clock():
    clock = IdClock()
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda _: new_ids(500, clock), range(40)))
    every = [i for batch in batches for i in batch]
    assert len(set(every)) == len(every)
    for batch in batches:
        assert batch == sorted(batch)


def test_a_clock_that_steps_back_keeps_ids_increasing():
    clock = IdClock()
    first = new_ids(3, clock, now_ms=2_000_000)
    later = new_ids(3, clock, now_ms=1_000_000)  # the system clock stepped back
    assert first + later == sorted(first + later)
    assert timestamp_ms(later[0]) == 2_000_000


def test_a_spent_counter_borrows_the_next_millisecond():
    clock = IdClock()
    clock.reserve(1, now_ms=5)
    clock._next = (1 << COUNTER_BITS) - 2  # nearly spent within millisecond 5
    ids = new_ids(10, clock, now_ms=5)
    assert timestamp_ms(ids[0]) == 6 and ids == sorted(ids)


def _counter(pid: str) -> int:
    """Return the 30-bit counter of one of our ids (rand_a, then the top of rand_b)."""
    value = uuid.UUID(pid).int
    return (((value >> 64) & 0xFFF) << 18) | ((value >> 44) & ((1 << 18) - 1))


def test_one_id_at_a_time_has_the_layout_of_a_batch():
    clock, ms = IdClock(), 1_790_000_000_000
    made = [*new_ids(1, clock, ms), *new_ids(3, clock, ms), *new_ids(1, clock, ms)]
    counters = [_counter(pid) for pid in made]
    assert counters == list(range(counters[0], counters[0] + 5)), "one counter, in order"
    assert made == sorted(made) and len(set(made)) == 5
    for pid in made:
        parsed = uuid.UUID(pid)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert parsed.int >> 80 == ms
        assert str(parsed) == pid

"""Storage engines against the contract in zkv.storage.base, both engines alike.

Every test that takes the ``storage`` fixture runs once on MemoryStorage and
once on LmdbStorage (in tmp_path). LMDB-only behaviour (reopening, a full map)
and the property test comparing both engines come last.
"""

from __future__ import annotations

import inspect
import os
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkv.core.versions import encode_value
from zkv.storage import (
    LmdbStorage,
    MemoryStorage,
    Storage,
    StorageError,
    StorageFull,
    open_storage,
)

MAP_SIZE_BYTES_TEST = 1 << 30
LONG_PREFIX = b"L" * 400
LONG_KEYS = [LONG_PREFIX + b"a", LONG_PREFIX + b"b" * 18, LONG_PREFIX + b"c" * 624]
ENGINES = ["memory", "lmdb"]
SCAN_PAGES_MAX = 10_000


def version(clock: int, writer: int = 1) -> bytes:
    return clock.to_bytes(8, "big") + writer.to_bytes(8, "big")


def record(clock: int, writer: int = 1, value: bytes | str | None = b"value") -> bytes:
    return encode_value(version(clock, writer), value)


def apply_one(storage, partition: int, key: bytes, stored: bytes) -> int:
    return storage.apply([partition], [key], [stored])


def scan_all(storage, partition: int, items_max: int = 1000, bytes_max: int = 1 << 40):
    """Every (key, record) of a partition, paging until the cursor is None."""
    pairs, cursor = storage.scan(partition, None, items_max, bytes_max)
    pages = [pairs]
    while cursor is not None:
        assert len(pages) < SCAN_PAGES_MAX, "scan is not advancing"
        pairs, cursor = storage.scan(partition, cursor, items_max, bytes_max)
        pages.append(pairs)
    return pages


def open_engine(name: str, directory) -> MemoryStorage | LmdbStorage:
    if name == "memory":
        return MemoryStorage()
    return LmdbStorage(str(directory), map_size_bytes=MAP_SIZE_BYTES_TEST)


@pytest.fixture(params=ENGINES)
def storage(request, tmp_path):
    engine = open_engine(request.param, tmp_path / "lmdb")
    try:
        yield engine
    finally:
        engine.close()


@pytest.mark.parametrize("engine", [MemoryStorage, LmdbStorage])
def test_engine_implements_the_interface_as_declared(engine):
    methods = [name for name, member in vars(Storage).items()
               if callable(member) and not name.startswith("_")]
    assert len(methods) == 13
    for name in methods:
        declared = inspect.signature(getattr(Storage, name))
        implemented = inspect.signature(getattr(engine, name))
        assert list(implemented.parameters) == list(declared.parameters), name
    assert isinstance(engine.durable, bool)


# -- put-if-newer --------------------------------------------------------------

PUT_IF_NEWER_CASES = [
    # (stored, incoming, written, expected afterwards)
    pytest.param(None, record(5), 1, record(5), id="missing-key-written"),
    pytest.param(record(5), record(6), 1, record(6), id="newer-clock-wins"),
    pytest.param(record(5), record(4), 0, record(5), id="older-ignored"),
    pytest.param(record(5), record(5), 0, record(5), id="equal-ignored"),
    pytest.param(record(5, value=b"a"), record(5, value=b"b"), 0, record(5, value=b"a"),
                 id="equal-version-other-payload-ignored"),
    pytest.param(record(5, writer=1), record(5, writer=2), 1, record(5, writer=2),
                 id="writer-breaks-tie"),
    pytest.param(record(5, writer=2), record(5, writer=1), 0, record(5, writer=2),
                 id="lower-writer-ignored"),
    pytest.param(record(5, value=b"x" * 1000), record(6, value=b""), 1, record(6, value=b""),
                 id="shorter-newer-wins"),
]


@pytest.mark.parametrize(("stored", "incoming", "written", "expected"), PUT_IF_NEWER_CASES)
def test_put_if_newer(storage, stored, incoming, written, expected):
    if stored is not None:
        apply_one(storage, 1, b"k", stored)
    assert apply_one(storage, 1, b"k", incoming) == written
    assert storage.get(1, b"k") == expected


def test_apply_counts_only_records_written(storage):
    assert storage.apply([0, 0, 1], [b"a", b"b", b"a"], [record(5), record(5), record(5)]) == 3
    partitions = [0, 0, 1, 2]
    keys = [b"a", b"b", b"a", b"new"]
    records = [record(6), record(4), record(5), record(1)]
    assert storage.apply(partitions, keys, records) == 2
    assert storage.apply(partitions, keys, records) == 0, "applying a batch twice changes nothing"
    assert storage.get(0, b"a") == record(6)
    assert storage.get(0, b"b") == record(5)


def test_same_key_twice_in_one_batch_is_applied_in_order(storage):
    assert storage.apply([0, 0], [b"k", b"k"], [record(1), record(2)]) == 2
    assert storage.apply([0, 0], [b"j", b"j"], [record(2), record(1)]) == 1
    assert storage.get(0, b"k") == record(2)
    assert storage.get(0, b"j") == record(2)


def test_partitions_are_separate_key_spaces(storage):
    storage.apply([1, 2], [b"k", b"k"], [record(1, value=b"one"), record(2, value=b"two")])
    assert storage.get(1, b"k") == record(1, value=b"one")
    assert storage.get(2, b"k") == record(2, value=b"two")
    assert storage.get(3, b"k") is None


def test_tombstone_is_stored_like_any_record(storage):
    apply_one(storage, 0, b"k", record(1, value=b"v"))
    tombstone = record(2, value=None)
    assert apply_one(storage, 0, b"k", tombstone) == 1
    assert storage.get(0, b"k") == tombstone
    assert storage.count(0) == 1
    assert scan_all(storage, 0) == [[(b"k", tombstone)]]
    assert apply_one(storage, 0, b"k", record(1, value=b"late")) == 0, "an older write must not resurrect"
    assert apply_one(storage, 0, b"k", record(3, value=b"again")) == 1


def test_unequal_batch_lengths_are_refused(storage):
    with pytest.raises(StorageError):
        storage.apply([0], [b"a", b"b"], [record(1)])
    with pytest.raises(StorageError):
        storage.delete_if_version(0, [b"a"], [])
    assert storage.count() == 0


# -- scan ----------------------------------------------------------------------

def fill_partition(storage, partition: int, keys: list[bytes], clock: int = 1) -> dict[bytes, bytes]:
    records = [record(clock, value=b"v" * (index % 7) + key[:20]) for index, key in enumerate(keys)]
    storage.apply([partition] * len(keys), keys, records)
    return dict(zip(keys, records))


def scan_fixture_keys() -> list[bytes]:
    return [b"", b"\x00", b"\xff" * 3] + [b"key:%04d" % index for index in range(240)] + LONG_KEYS


@pytest.mark.parametrize("items_max", [1, 7, 243, 246, 1000])
def test_scan_pages_return_every_record_once_and_only_its_partition(storage, items_max):
    # Neighbouring partitions hold keys that sort right next to partition 3's range.
    fill_partition(storage, 2, [b"\xff" * 8, b"zz"] + LONG_KEYS)
    fill_partition(storage, 4, [b"", b"\x00"])
    expected = fill_partition(storage, 3, scan_fixture_keys())
    pages = scan_all(storage, 3, items_max=items_max)
    pairs = [pair for page in pages for pair in page]
    assert all(1 <= len(page) <= items_max for page in pages)
    assert len(pairs) == len(expected), "every record exactly once"
    assert dict(pairs) == expected
    assert [key for key, _ in pairs if len(key) <= 400] == sorted(k for k in expected if len(k) <= 400)


def test_scan_cursor_is_none_exactly_when_exhausted(storage):
    fill_partition(storage, 0, [b"a", b"b", b"c", b"d"])
    pairs, cursor = storage.scan(0, None, 2, 1 << 20)
    assert [key for key, _ in pairs] == [b"a", b"b"] and cursor is not None
    pairs, cursor = storage.scan(0, cursor, 2, 1 << 20)
    assert [key for key, _ in pairs] == [b"c", b"d"] and cursor is None
    assert storage.scan(0, None, 10, 1 << 20)[1] is None
    assert storage.scan(9, None, 10, 1 << 20) == ([], None)


def test_scan_after_a_key_is_strictly_after_it(storage):
    fill_partition(storage, 0, [b"", b"a", b"a\x00", b"b"])
    assert [key for key, _ in storage.scan(0, b"", 10, 1 << 20)[0]] == [b"a", b"a\x00", b"b"]
    assert [key for key, _ in storage.scan(0, b"a", 10, 1 << 20)[0]] == [b"a\x00", b"b"]
    assert [key for key, _ in storage.scan(0, b"aa", 10, 1 << 20)[0]] == [b"b"]
    assert storage.scan(0, b"b", 10, 1 << 20) == ([], None)


def test_scan_stops_once_records_reach_bytes_max(storage):
    keys = [b"k%02d" % index for index in range(10)]
    records = [record(1, value=b"x" * 100) for _ in keys]
    storage.apply([0] * 10, keys, records)
    record_bytes = len(records[0])
    for bytes_max, per_page in [(3 * record_bytes, 3), (3 * record_bytes - 1, 3),
                                (3 * record_bytes + 1, 4), (1, 1), (0, 1)]:
        pages = scan_all(storage, 0, items_max=100, bytes_max=bytes_max)
        assert [len(page) for page in pages[:-1]] == [per_page] * (len(pages) - 1)
        assert sum(len(page) for page in pages) == 10


def test_scan_returns_long_keys_intact_and_pages_through_them(storage):
    expected = fill_partition(storage, 5, LONG_KEYS + [LONG_PREFIX, b"short"])
    for key in expected:
        assert storage.get(5, key) == expected[key]
    pairs = [pair for page in scan_all(storage, 5, items_max=1) for pair in page]
    assert sorted(pairs) == sorted(expected.items())
    assert storage.get(5, LONG_PREFIX + b"z") is None


# -- deletes -------------------------------------------------------------------

def test_delete_if_version_deletes_only_exact_matches(storage):
    expected = fill_partition(storage, 0, [b"a", b"b", b"c", LONG_KEYS[0]])
    keys = [b"a", b"b", b"missing", LONG_KEYS[0], b"c"]
    records = [expected[b"a"], record(9), record(1), expected[LONG_KEYS[0]], expected[b"a"]]
    assert storage.delete_if_version(0, keys, records) == 2
    assert storage.get(0, b"a") is None
    assert storage.get(0, LONG_KEYS[0]) is None
    assert storage.get(0, b"b") == expected[b"b"]
    assert storage.get(0, b"c") == expected[b"c"]
    assert storage.count() == 2
    assert storage.delete_if_version(0, [b"b", b"c"], [expected[b"b"], expected[b"c"]]) == 2
    assert storage.partitions() == []


def test_drop_partition_is_bounded_and_complete(storage):
    fill_partition(storage, 7, [b"key:%02d" % index for index in range(22)] + LONG_KEYS)
    fill_partition(storage, 6, [b"keep"])
    fill_partition(storage, 8, [b"", b"keep"])
    remaining = []
    while True:
        done = storage.drop_partition(7, 10)
        remaining.append(storage.count(7))
        if done:
            break
    assert remaining == [15, 5, 0]
    assert (storage.count(6), storage.count(8)) == (1, 2), "neighbours untouched"
    assert storage.partitions() == [6, 8]
    assert storage.drop_partition(7, 10) is True
    assert storage.drop_partition(8, 2) is True, "dropping exactly what is left finishes"
    assert storage.partitions() == [6]
    if isinstance(storage, LmdbStorage):
        assert storage.stats()["long_keys"] == 0


def test_partition_numbers_at_the_edges(storage):
    fill_partition(storage, 0, [b"a"])
    fill_partition(storage, 65535, [b"a", LONG_KEYS[1]])
    assert storage.partitions() == [0, 65535]
    assert sorted(key for page in scan_all(storage, 65535) for key, _ in page) == sorted([b"a", LONG_KEYS[1]])
    assert storage.drop_partition(65535, 100) is True
    assert storage.partitions() == [0]


# -- counts, meta, stats --------------------------------------------------------

def test_counts_and_partitions(storage):
    assert storage.count() == 0 and storage.partitions() == []
    fill_partition(storage, 3, [b"a", b"b", LONG_KEYS[0]])
    fill_partition(storage, 1, [b"a"])
    fill_partition(storage, 60, [b"z", b"y"])
    assert storage.partitions() == [1, 3, 60]
    assert [storage.count(partition) for partition in (0, 1, 3, 60)] == [0, 1, 3, 2]
    assert storage.count() == 6
    assert storage.stats()["records"] == 6


def test_meta_blobs(storage):
    assert storage.meta_get("config") is None
    storage.meta_put("config", b"\x00partitions=64")
    storage.meta_put("acceptor", b"")
    storage.meta_put("config", b"partitions=128")
    assert storage.meta_get("config") == b"partitions=128"
    assert storage.meta_get("acceptor") == b""
    assert storage.count() == 0, "meta blobs are not records"


# -- turns ---------------------------------------------------------------------

def test_one_commit_per_turn_whatever_the_number_of_applies(storage):
    commits_before = storage.stats()["commits"]
    storage.begin_turn()
    for index in range(1000):
        storage.apply([index % 8], [b"key:%d" % index], [record(1)])
    storage.meta_put("acceptor", b"state")
    storage.delete_if_version(0, [b"key:0"], [record(1)])
    storage.end_turn()
    assert storage.stats()["commits"] == commits_before + 1
    assert storage.count() == 999


def test_turn_that_changes_nothing_commits_nothing(storage):
    apply_one(storage, 0, b"k", record(5))
    commits_before = storage.stats()["commits"]
    storage.begin_turn()
    storage.end_turn()
    storage.begin_turn()
    apply_one(storage, 0, b"k", record(4))
    storage.delete_if_version(0, [b"k"], [record(3)])
    storage.end_turn()
    assert storage.stats()["commits"] == commits_before


def test_writes_outside_a_turn_commit_one_by_one(storage):
    commits_before = storage.stats()["commits"]
    apply_one(storage, 0, b"a", record(1))
    storage.apply([0, 0], [b"b", b"c"], [record(1), record(1)])
    storage.meta_put("x", b"y")
    assert storage.stats()["commits"] == commits_before + 3


def test_reads_inside_a_turn_see_the_turns_writes(storage):
    apply_one(storage, 2, b"old", record(1))
    storage.begin_turn()
    assert storage.get(2, b"old") == record(1)
    storage.apply([2, 2, 9], [b"old", b"new", LONG_KEYS[2]], [record(2), record(2), record(2)])
    storage.meta_put("acceptor", b"promised")
    assert storage.get(2, b"old") == record(2)
    assert storage.get(9, LONG_KEYS[2]) == record(2)
    assert [key for page in scan_all(storage, 2) for key, _ in page] == [b"new", b"old"]
    assert storage.count(2) == 2 and storage.count() == 3
    assert storage.partitions() == [2, 9]
    assert storage.meta_get("acceptor") == b"promised"
    assert storage.drop_partition(9, 10) is True
    assert storage.get(9, LONG_KEYS[2]) is None
    storage.end_turn()
    assert storage.partitions() == [2]


def test_caller_error_mid_batch_inside_a_turn_keeps_what_came_before(storage):
    storage.begin_turn()
    with pytest.raises(TypeError):
        storage.apply([1, 1], [b"b", "not bytes"], [record(1), record(1)])
    storage.end_turn()
    assert storage.get(1, b"b") == record(1)


def test_turns_must_be_paired(storage):
    with pytest.raises(StorageError):
        storage.end_turn()
    storage.begin_turn()
    with pytest.raises(StorageError):
        storage.begin_turn()
    storage.end_turn()


def test_largest_keys_and_values(storage):
    key = bytes(range(256)) * 4
    value = os.urandom(4 << 20)
    stored = record(1, value=value)
    assert apply_one(storage, 0, key, stored) == 1
    assert storage.get(0, key) == stored
    assert storage.scan(0, None, 10, 1) == ([(key, stored)], None)
    assert apply_one(storage, 0, key, record(1, value=b"small")) == 0


# -- LMDB only -----------------------------------------------------------------

def test_lmdb_keeps_everything_committed_across_close_and_reopen(tmp_path):
    path = str(tmp_path / "data")
    storage = LmdbStorage(path, map_size_bytes=MAP_SIZE_BYTES_TEST)
    storage.begin_turn()
    expected = fill_partition(storage, 4, [b"a", b"b"] + LONG_KEYS)
    storage.meta_put("config", b"\x01\x02config")
    storage.end_turn()
    apply_one(storage, 5, b"auto-committed", record(3))
    storage.meta_put("acceptor", b"outside a turn")
    storage.begin_turn()
    apply_one(storage, 6, b"never committed", record(1))
    storage.meta_put("config", b"never committed")
    storage.close()  # a turn that never ended is lost, as in a crash

    reopened = LmdbStorage(path, map_size_bytes=MAP_SIZE_BYTES_TEST)
    try:
        assert dict(pair for page in scan_all(reopened, 4) for pair in page) == expected
        assert reopened.get(5, b"auto-committed") == record(3)
        assert reopened.get(6, b"never committed") is None
        assert reopened.meta_get("config") == b"\x01\x02config"
        assert reopened.meta_get("acceptor") == b"outside a turn"
        assert reopened.partitions() == [4, 5]
        assert reopened.count() == len(expected) + 1
        assert reopened.stats()["long_keys"] == len(LONG_KEYS)
    finally:
        reopened.close()


def test_lmdb_full_map_rolls_back_the_turn_and_raises(tmp_path):
    storage = LmdbStorage(str(tmp_path / "small"), map_size_bytes=2 << 20)
    try:
        apply_one(storage, 0, b"committed", record(1))
        storage.begin_turn()
        apply_one(storage, 0, b"in the failed turn", record(1))
        with pytest.raises(StorageFull):
            apply_one(storage, 0, b"too big", record(1, value=bytes(4 << 20)))
        with pytest.raises(StorageFull):
            apply_one(storage, 0, b"after the failure", record(1))
        assert storage.get(0, b"in the failed turn") is None
        with pytest.raises(StorageFull):
            storage.end_turn()
        with pytest.raises(StorageFull):
            apply_one(storage, 0, b"too big outside a turn", record(1, value=bytes(4 << 20)))
        storage.begin_turn()
        apply_one(storage, 0, b"next turn", record(1))
        storage.end_turn()
        assert [key for page in scan_all(storage, 0) for key, _ in page] == [b"committed", b"next turn"]
    finally:
        storage.close()


def test_lmdb_caller_error_outside_a_turn_writes_nothing(tmp_path):
    storage = LmdbStorage(str(tmp_path / "data"), map_size_bytes=MAP_SIZE_BYTES_TEST)
    try:
        with pytest.raises(TypeError):
            storage.apply([0, 0], [b"a", "not bytes"], [record(1), record(1)])
        with pytest.raises(StorageError):
            storage.apply([0, 70000], [b"a", b"b"], [record(1), record(1)])
        assert storage.count() == 0
        assert storage.stats()["commits"] == 0
    finally:
        storage.close()


def test_open_storage_picks_the_engine(tmp_path):
    memory = open_storage(None)
    assert isinstance(memory, MemoryStorage) and memory.durable is False
    durable = open_storage(str(tmp_path / "nested" / "data"))
    try:
        assert isinstance(durable, LmdbStorage) and durable.durable is True
        assert (tmp_path / "nested" / "data").is_dir()
    finally:
        durable.close()


# -- property: any order of any records converges to the newest per key ---------

KEY_CHOICES = [b"", b"a", b"b", b"ab", b"\xff"] + LONG_KEYS


@st.composite
def record_streams(draw):
    items = draw(st.lists(
        st.tuples(
            st.integers(0, 3),              # partition
            st.sampled_from(KEY_CHOICES),   # key
            st.integers(0, 6),              # clock
            st.integers(0, 2),              # writer
        ),
        max_size=40,
    ))
    # The payload (and whether it is a tombstone) is a function of the
    # version, as it is for real writes: one version is one write.
    stream = [
        (partition, key, record(clock, writer, None if clock % 3 == 2 else b"%d:%d" % (clock, writer)))
        for partition, key, clock, writer in items
    ]
    duplicates = draw(st.lists(st.sampled_from(stream), max_size=10)) if stream else []
    return stream + duplicates


def apply_in_turns(storage, stream, batch_items):
    for start in range(0, len(stream), batch_items):
        batch = stream[start:start + batch_items]
        storage.begin_turn()
        storage.apply([item[0] for item in batch], [item[1] for item in batch], [item[2] for item in batch])
        storage.end_turn()


def contents(storage) -> dict[tuple[int, bytes], bytes]:
    return {
        (partition, key): stored
        for partition in storage.partitions()
        for page in scan_all(storage, partition, items_max=3)
        for key, stored in page
    }


@settings(max_examples=60, deadline=None)
@given(stream=record_streams(), data=st.data())
def test_any_order_converges_to_the_newest_record_per_key_on_both_engines(stream, data):
    expected: dict[tuple[int, bytes], bytes] = {}
    for partition, key, stored in stream:
        current = expected.get((partition, key))
        if current is None or current[:16] < stored[:16]:
            expected[(partition, key)] = stored
    shuffled = data.draw(st.permutations(stream))
    batch_items = data.draw(st.integers(1, 8))

    memory = MemoryStorage()
    apply_in_turns(memory, stream, batch_items)
    with tempfile.TemporaryDirectory() as directory:
        durable = LmdbStorage(directory, map_size_bytes=64 << 20)
        try:
            apply_in_turns(durable, shuffled, batch_items)
            durable_contents = contents(durable)
            assert durable.count() == len(expected)
        finally:
            durable.close()
    assert contents(memory) == expected
    assert durable_contents == expected
    assert memory.count() == len(expected)

"""Placement: key -> partition (stable hash) and rendezvous owner ranking.

The pinned values below were computed once from the CRC-32 scheme in
``zkv.core.placement`` (partitions) and the blake2b rendezvous weights; if any of them changes, keys already stored would land in
different partitions on a new build, so a change to the hash must be deliberate.
"""

from __future__ import annotations

import collections

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkv.core.placement import (
    PARTITIONS_DEFAULT,
    REPLICATION_DEFAULT,
    key_bytes,
    partition_of,
    rank_owners,
    rendezvous_weight,
)

NODE_POOL = [f"n{index}" for index in range(1, 13)]

node_sets = st.lists(st.sampled_from(NODE_POOL), min_size=1, max_size=10, unique=True)
replications = st.integers(min_value=1, max_value=5)
partitions = st.integers(min_value=0, max_value=PARTITIONS_DEFAULT - 1)


# -- partition_of ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("key", "partitions_count", "expected"),
    [
        (b"user:123", 64, 0),
        (b"user:123", 16, 0),
        (b"user:123", 65536, 943),
        (b"", 64, 0),
        (b"a", 64, 62),
        (b"a", 16, 15),
        ("ключ".encode("utf-8"), 64, 3),
        (b"\x00\xff", 64, 3),
        (b"\x00\xff", 65536, 3683),
    ],
)
def test_partition_of_is_pinned(key, partitions_count, expected):
    assert partition_of(key, partitions_count) == expected


def test_rendezvous_weight_is_pinned():
    assert rendezvous_weight(0, "n1") == 10805021196484700063
    assert rank_owners(0, ["n1", "n2", "n3", "n4", "n5"], 3) == ("n1", "n5", "n3")
    assert rank_owners(7, ["n1", "n2", "n3", "n4", "n5"], 3) == ("n5", "n1", "n4")


@pytest.mark.parametrize(
    ("text_key", "expected_bytes"),
    [
        ("user:123", b"user:123"),
        ("ключ", "ключ".encode("utf-8")),
        ("", b""),
        ("\u00e9", b"\xc3\xa9"),
    ],
)
def test_key_bytes_canonicalises_str_as_utf8(text_key, expected_bytes):
    assert key_bytes(text_key) == expected_bytes
    assert partition_of(key_bytes(text_key), 64) == partition_of(expected_bytes, 64)


@pytest.mark.parametrize("raw", [b"abc", bytearray(b"abc"), memoryview(b"abc")])
def test_key_bytes_accepts_bytes_like_and_returns_bytes(raw):
    result = key_bytes(raw)
    assert type(result) is bytes
    assert result == b"abc"


@pytest.mark.parametrize("bad", [1, None, 1.5, ["a"], object()])
def test_key_bytes_rejects_other_types(bad):
    with pytest.raises(TypeError, match="key must be str or bytes"):
        key_bytes(bad)


@settings(derandomize=True, deadline=None)
@given(st.text(max_size=50))
def test_partition_of_str_equals_partition_of_its_utf8_bytes(text):
    assert partition_of(key_bytes(text), 64) == partition_of(text.encode("utf-8"), 64)


@settings(derandomize=True, deadline=None)
@given(st.binary(max_size=64), st.integers(min_value=1, max_value=70000))
def test_partition_of_is_in_range_and_deterministic(key, partitions_count):
    first = partition_of(key, partitions_count)
    assert 0 <= first < partitions_count
    assert partition_of(bytes(key), partitions_count) == first


def test_partition_of_is_roughly_uniform_over_64_partitions():
    keys_count = 10_000
    counts = collections.Counter(partition_of(f"key-{index}".encode(), 64) for index in range(keys_count))
    assert set(counts) == set(range(64)), "some partition received no key"
    expected = keys_count / 64
    chi_square = sum((counts[p] - expected) ** 2 / expected for p in range(64))
    # 63 degrees of freedom: chi-square above 120 has probability ~1e-5 for a uniform hash.
    assert chi_square < 120, chi_square
    assert min(counts.values()) > expected * 0.6
    assert max(counts.values()) < expected * 1.4


# -- rank_owners ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("members", "replication", "expected_len"),
    [
        ([], 3, 0),
        (["n1"], 3, 1),
        (["n1", "n2"], 3, 2),
        (["n1", "n2", "n3"], 3, 3),
        (["n1", "n2", "n3", "n4", "n5"], 3, 3),
        (["n1", "n2", "n3", "n4", "n5"], 1, 1),
        (["n1", "n2", "n3", "n4", "n5"], 5, 5),
    ],
)
def test_rank_owners_returns_min_of_replication_and_members(members, replication, expected_len):
    for partition in range(8):
        owners = rank_owners(partition, members, replication)
        assert len(owners) == expected_len
        assert len(set(owners)) == expected_len
        assert set(owners) <= set(members)


def test_rank_owners_is_heaviest_first():
    members = NODE_POOL[:6]
    for partition in range(16):
        owners = rank_owners(partition, members, REPLICATION_DEFAULT)
        weights = [rendezvous_weight(partition, node) for node in owners]
        assert weights == sorted(weights, reverse=True)
        lightest_owner = weights[-1]
        for other in set(members) - set(owners):
            assert rendezvous_weight(partition, other) <= lightest_owner


def test_rank_owners_spreads_primaries_over_members():
    members = NODE_POOL[:4]
    primaries = collections.Counter(rank_owners(p, members, 3)[0] for p in range(PARTITIONS_DEFAULT))
    assert set(primaries) == set(members)


@settings(derandomize=True, deadline=None)
@given(node_sets, replications, partitions, st.randoms(use_true_random=False))
def test_rank_owners_is_deterministic_and_independent_of_input_order(members, replication, partition, rng):
    shuffled = list(members)
    rng.shuffle(shuffled)
    owners = rank_owners(partition, members, replication)
    assert owners == rank_owners(partition, shuffled, replication)
    assert owners == rank_owners(partition, tuple(reversed(members)), replication)
    assert len(owners) == min(replication, len(members))
    assert len(set(owners)) == len(owners)


@settings(derandomize=True, deadline=None, max_examples=200)
@given(node_sets, replications, st.sampled_from(NODE_POOL))
def test_adding_a_node_changes_only_partitions_it_now_owns(members, replication, newcomer):
    if newcomer in members:
        return
    grown = members + [newcomer]
    for partition in range(PARTITIONS_DEFAULT):
        before = set(rank_owners(partition, members, replication))
        after = set(rank_owners(partition, grown, replication))
        if newcomer in after:
            # the newcomer took exactly one slot (or filled a free one); nobody else arrived
            assert after - before == {newcomer}
            assert len(before - after) == (1 if len(members) >= replication else 0)
        else:
            assert after == before


@settings(derandomize=True, deadline=None, max_examples=200)
@given(node_sets, replications, st.data())
def test_removing_a_node_changes_only_partitions_it_owned(members, replication, data):
    leaver = data.draw(st.sampled_from(members))
    shrunk = [node for node in members if node != leaver]
    for partition in range(PARTITIONS_DEFAULT):
        before = set(rank_owners(partition, members, replication))
        after = set(rank_owners(partition, shrunk, replication))
        if leaver in before:
            assert before - after == {leaver}
            assert len(after - before) == (1 if len(shrunk) >= replication else 0)
        else:
            assert after == before

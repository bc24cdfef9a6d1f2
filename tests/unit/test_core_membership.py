"""MemberTable: gossip merge rules, refutation, failure detection timing, ring candidates."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkv.core.membership import (
    ALIVE,
    DEAD,
    LEFT,
    STATE_RANK,
    SUSPECT,
    MemberChange,
    MemberTable,
    member_from_wire,
)

SUSPECT_AFTER_MS = 1500
DEAD_AFTER_MS = 5000
START_MS = 10_000
TICK_MS = 200  # well under suspect_after, so no tick looks like a pause


def entry(node_id="b", incarnation=5, state=ALIVE, heartbeat=1, epoch=0, generation=1, address=None):
    return [node_id, address or f"{node_id}:1", f"{node_id}:2", incarnation, state, heartbeat, epoch, generation]


def new_table(self_id="a", now_ms=START_MS) -> MemberTable:
    return MemberTable(self_id, f"{self_id}:1", f"{self_id}:2", now_ms, generation=1,
                       suspect_after_ms=SUSPECT_AFTER_MS, dead_after_ms=DEAD_AFTER_MS)


def view(table: MemberTable, node_id: str) -> tuple:
    member = table.get(node_id)
    return member.incarnation, member.state, member.heartbeat, member.epoch


def tick_until(table: MemberTable, end_ms: int, start_ms: int) -> None:
    """Tick every TICK_MS from start_ms (exclusive) up to end_ms (inclusive, exactly)."""
    now_ms = start_ms
    while now_ms + TICK_MS < end_ms:
        now_ms += TICK_MS
        table.tick(now_ms)
    table.tick(end_ms)


# -- construction ---------------------------------------------------------------------------

def test_a_new_table_holds_only_itself_alive_with_incarnation_from_the_clock():
    table = new_table(now_ms=123_456)
    assert list(table.members) == ["a"]
    assert table.me.state == ALIVE
    assert table.me.incarnation == 123_456
    assert table.me.heartbeat == 0


def test_tick_bumps_own_heartbeat():
    table = new_table()
    table.tick(START_MS + 200)
    table.tick(START_MS + 400)
    assert table.me.heartbeat == 2


def test_set_epoch_only_moves_forward():
    table = new_table()
    table.set_epoch(5)
    table.set_epoch(3)
    assert table.me.epoch == 5


# -- merge rules ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("current", "incoming", "expected"),
    [
        # higher incarnation wins outright, even with a better state and a lower heartbeat
        ((5, SUSPECT, 10, 3), (6, ALIVE, 1, 1), (6, ALIVE, 1, 1)),
        ((5, DEAD, 10, 3), (6, ALIVE, 1, 1), (6, ALIVE, 1, 1)),
        ((5, LEFT, 10, 3), (6, ALIVE, 1, 1), (6, ALIVE, 1, 1)),
        # lower incarnation loses outright, even with a worse state
        ((6, ALIVE, 1, 1), (5, DEAD, 99, 9), (6, ALIVE, 1, 1)),
        # equal incarnation: worse state wins; heartbeat and epoch take the maximum
        ((5, ALIVE, 10, 3), (5, SUSPECT, 4, 1), (5, SUSPECT, 10, 3)),
        ((5, SUSPECT, 4, 1), (5, ALIVE, 10, 3), (5, SUSPECT, 10, 3)),
        ((5, SUSPECT, 4, 1), (5, DEAD, 2, 7), (5, DEAD, 4, 7)),
        ((5, DEAD, 4, 1), (5, SUSPECT, 9, 0), (5, DEAD, 9, 1)),
        ((5, DEAD, 4, 1), (5, LEFT, 4, 1), (5, LEFT, 4, 1)),
        # left is terminal for that incarnation: an alive rumour does not undo it
        ((5, LEFT, 4, 1), (5, ALIVE, 50, 8), (5, LEFT, 50, 8)),
        ((5, LEFT, 4, 1), (5, DEAD, 50, 8), (5, LEFT, 50, 8)),
        ((5, ALIVE, 4, 1), (5, ALIVE, 4, 1), (5, ALIVE, 4, 1)),
    ],
)
def test_merge_rules(current, incoming, expected):
    table = new_table()
    table.merge([entry("b", *current)], START_MS)
    table.merge([entry("b", *incoming)], START_MS + 100)
    assert view(table, "b") == expected


def test_merge_reports_changes_of_state_only():
    table = new_table()
    assert table.merge([entry("b", 5, ALIVE, 1)], START_MS) == [MemberChange("b", None, ALIVE, 5)]
    assert table.merge([entry("b", 5, ALIVE, 2)], START_MS) == []  # heartbeat only
    assert table.merge([entry("b", 5, SUSPECT, 2)], START_MS) == [MemberChange("b", ALIVE, SUSPECT, 5)]
    assert table.merge([entry("b", 6, ALIVE, 0)], START_MS) == [MemberChange("b", SUSPECT, ALIVE, 6)]
    assert table.merge([entry("b", 6, ALIVE, 0)], START_MS) == []


def test_higher_incarnation_replaces_address_and_generation():
    table = new_table()
    table.merge([entry("b", 5, generation=1, address="old:1")], START_MS)
    table.merge([entry("b", 6, generation=2, address="new:1")], START_MS)
    member = table.get("b")
    assert (member.address, member.generation) == ("new:1", 2)


@pytest.mark.parametrize(
    "malformed",
    [
        None,
        "b",
        42,
        {"node_id": "b"},
        ["b", "b:1", "b:2", 5, ALIVE, 1, 0],  # seven fields
        ["b", "b:1", "b:2", 5, ALIVE, 1, 0, 1, "extra"],
        ("b", "b:1", "b:2", 5, ALIVE, 1, 0, 1),  # a tuple never comes off the wire
        [7, "b:1", "b:2", 5, ALIVE, 1, 0, 1],  # id not a str
        ["", "b:1", "b:2", 5, ALIVE, 1, 0, 1],  # empty id
        ["x" * 257, "b:1", "b:2", 5, ALIVE, 1, 0, 1],  # id too long
        ["b", None, "b:2", 5, ALIVE, 1, 0, 1],
        ["b", "b:1", b"b:2", 5, ALIVE, 1, 0, 1],
        ["b", "b:1", "b:2", "5", ALIVE, 1, 0, 1],
        ["b", "b:1", "b:2", True, ALIVE, 1, 0, 1],  # bool is not an incarnation
        ["b", "b:1", "b:2", 5.0, ALIVE, 1, 0, 1],
        ["b", "b:1", "b:2", 5, "zombie", 1, 0, 1],
        ["b", "b:1", "b:2", 5, ALIVE, False, 0, 1],
        ["b", "b:1", "b:2", 5, ALIVE, 1, None, 1],
        ["b", "b:1", "b:2", 5, ALIVE, 1, 0, "1"],
    ],
)
def test_malformed_entries_are_skipped_and_good_ones_still_merge(malformed):
    assert member_from_wire(malformed) is None
    table = new_table()
    changes = table.merge([malformed, entry("c", 3)], START_MS)
    assert set(table.members) == {"a", "c"}
    assert changes == [MemberChange("c", None, ALIVE, 3)]


def test_member_from_wire_accepts_a_well_formed_entry():
    member = member_from_wire(entry("b", 5, SUSPECT, 9, 4, 2))
    assert (member.node_id, member.incarnation, member.state, member.heartbeat, member.epoch,
            member.generation) == ("b", 5, SUSPECT, 9, 4, 2)
    assert member.to_wire() == entry("b", 5, SUSPECT, 9, 4, 2)


# -- hearing about myself ------------------------------------------------------------------------

@pytest.mark.parametrize("rumour_state", [SUSPECT, DEAD, LEFT])
def test_a_member_refutes_a_rumour_about_itself(rumour_state):
    table = new_table()
    mine = table.me.incarnation
    changes = table.merge([entry("a", mine, rumour_state)], START_MS)
    assert table.me.incarnation == mine + 1
    assert table.me.state == ALIVE
    assert changes == [MemberChange("a", rumour_state, ALIVE, mine + 1)]


def test_a_member_refutes_past_a_rumour_from_a_higher_incarnation():
    table = new_table()
    rumour_incarnation = table.me.incarnation + 40
    table.merge([entry("a", rumour_incarnation, DEAD)], START_MS)
    assert table.me.incarnation == rumour_incarnation + 1
    assert table.me.state == ALIVE


@pytest.mark.parametrize(
    ("incarnation_offset", "state"),
    [(-1, SUSPECT), (-1, DEAD), (0, ALIVE), (3, ALIVE)],
)
def test_stale_or_harmless_rumours_about_myself_change_nothing(incarnation_offset, state):
    table = new_table()
    mine = table.me.incarnation
    changes = table.merge([entry("a", mine + incarnation_offset, state, heartbeat=999)], START_MS)
    assert changes == []
    assert table.me.incarnation == mine
    assert table.me.state == ALIVE
    assert table.me.heartbeat == 0  # our own heartbeat is ours alone


def test_a_member_that_left_does_not_refute():
    table = new_table()
    assert table.leave() == MemberChange("a", ALIVE, LEFT, table.me.incarnation)
    assert table.leave() is None  # once
    mine = table.me.incarnation
    assert table.merge([entry("a", mine, DEAD)], START_MS) == []
    assert table.me.state == LEFT
    assert table.me.incarnation == mine


# -- failure detection timing ---------------------------------------------------------------------

def test_suspect_then_dead_at_exact_boundaries():
    table = new_table()
    table.merge([entry("b", 5)], START_MS)  # last progress at START_MS
    tick_until(table, START_MS + SUSPECT_AFTER_MS - 1, START_MS)
    assert table.get("b").state == ALIVE
    changes = table.tick(START_MS + SUSPECT_AFTER_MS)
    assert table.get("b").state == SUSPECT
    assert changes == [MemberChange("b", ALIVE, SUSPECT, 5)]
    tick_until(table, START_MS + DEAD_AFTER_MS - 1, START_MS + SUSPECT_AFTER_MS)
    assert table.get("b").state == SUSPECT
    changes = table.tick(START_MS + DEAD_AFTER_MS)
    assert table.get("b").state == DEAD
    assert changes == [MemberChange("b", SUSPECT, DEAD, 5)]
    assert table.tick(START_MS + DEAD_AFTER_MS + TICK_MS) == []  # dead is reported once


def test_heartbeat_progress_restarts_the_timer():
    table = new_table()
    table.merge([entry("b", 5, heartbeat=1)], START_MS)
    tick_until(table, START_MS + 1400, START_MS)
    table.merge([entry("b", 5, heartbeat=2)], START_MS + 1400)
    tick_until(table, START_MS + 1400 + SUSPECT_AFTER_MS - 1, START_MS + 1400)
    assert table.get("b").state == ALIVE
    table.tick(START_MS + 1400 + SUSPECT_AFTER_MS)
    assert table.get("b").state == SUSPECT


def test_gossip_without_progress_does_not_restart_the_timer():
    table = new_table()
    table.merge([entry("b", 5, heartbeat=3)], START_MS)
    tick_until(table, START_MS + 1400, START_MS)
    table.merge([entry("b", 5, heartbeat=3)], START_MS + 1400)  # same heartbeat: no news
    table.tick(START_MS + SUSPECT_AFTER_MS)
    assert table.get("b").state == SUSPECT


def test_a_suspect_that_refutes_is_alive_again():
    table = new_table()
    table.merge([entry("b", 5)], START_MS)
    tick_until(table, START_MS + SUSPECT_AFTER_MS, START_MS)
    assert table.get("b").state == SUSPECT
    table.merge([entry("b", 6, ALIVE, heartbeat=0)], START_MS + SUSPECT_AFTER_MS + 10)
    assert table.get("b").state == ALIVE
    table.tick(START_MS + SUSPECT_AFTER_MS + 200)
    assert table.get("b").state == ALIVE


def test_no_false_suspicion_after_a_long_gap_between_ticks():
    table = new_table()
    table.merge([entry("b", 5), entry("c", 5)], START_MS)
    table.tick(START_MS)
    resumed_ms = START_MS + 60_000  # we were paused (SIGSTOP) for a minute
    assert table.tick(resumed_ms) == []
    assert table.get("b").state == ALIVE
    assert table.get("c").state == ALIVE
    # ...and the fresh grace period is a real one: silence after resuming still counts
    tick_until(table, resumed_ms + SUSPECT_AFTER_MS - 1, resumed_ms)
    assert table.get("b").state == ALIVE
    table.tick(resumed_ms + SUSPECT_AFTER_MS)
    assert table.get("b").state == SUSPECT


def test_dead_and_left_members_are_not_re_judged():
    table = new_table()
    table.merge([entry("b", 5, LEFT), entry("c", 5, DEAD)], START_MS)
    tick_until(table, START_MS + 2 * DEAD_AFTER_MS, START_MS)
    assert table.get("b").state == LEFT
    assert table.get("c").state == DEAD


# -- what the node asks of the table ----------------------------------------------------------------

def test_is_responsive():
    table = new_table()
    table.merge([entry("b", 5, ALIVE), entry("c", 5, SUSPECT), entry("d", 5, DEAD), entry("e", 5, LEFT)], START_MS)
    assert table.is_responsive("a", START_MS + 10 * DEAD_AFTER_MS)  # always, for ourselves
    assert table.is_responsive("b", START_MS + DEAD_AFTER_MS - 1)
    assert not table.is_responsive("b", START_MS + DEAD_AFTER_MS)
    assert table.is_responsive("e", START_MS)  # a leaving node still answers
    assert not table.is_responsive("d", START_MS)
    assert not table.is_responsive("z", START_MS)


def test_ring_candidates_are_up_members_not_leaving():
    table = new_table()
    table.merge([entry("c", 5, SUSPECT), entry("b", 5, ALIVE), entry("e", 5, LEFT), entry("d", 5, DEAD)], START_MS)
    assert table.ring_candidates(START_MS) == ["a", "b", "c"]


def test_ring_candidates_drop_a_dead_member_that_went_silent():
    table = new_table()
    table.merge([entry("b", 5, heartbeat=1)], START_MS)
    tick_until(table, START_MS + DEAD_AFTER_MS, START_MS)
    assert table.get("b").state == DEAD
    assert table.ring_candidates(START_MS + DEAD_AFTER_MS) == ["a"]


def test_ring_candidates_keep_a_dead_rumoured_member_whose_heartbeat_advances():
    table = new_table()
    table.merge([entry("b", 5, ALIVE, heartbeat=1)], START_MS)
    # a node cut off from b declares it dead; we hear that rumour...
    table.merge([entry("b", 5, DEAD, heartbeat=1)], START_MS + 100)
    assert table.get("b").state == DEAD
    # ...but b's heartbeat keeps advancing in gossip we receive
    table.merge([entry("b", 5, DEAD, heartbeat=2)], START_MS + 300)
    table.merge([entry("b", 5, DEAD, heartbeat=3)], START_MS + 500)
    assert table.ring_candidates(START_MS + 500) == ["a", "b"]


def test_gossip_targets_are_random_up_peers_and_sometimes_one_dead():
    table = new_table()
    table.merge([entry(n, 5, ALIVE) for n in "bcdef"] + [entry("x", 5, DEAD)], START_MS)
    rng = random.Random(3)
    picks = [table.gossip_targets(rng, fanout=3) for _ in range(200)]
    for chosen in picks:
        up = [n for n in chosen if n != "x"]
        assert len(up) == 3 and len(set(up)) == 3
        assert set(up) <= set("bcdef")
        assert "a" not in chosen
    with_dead = sum(1 for chosen in picks if "x" in chosen)
    assert 50 < with_dead < 150  # about half the rounds try the dead member


def test_a_leaving_member_gets_gossip_while_it_is_still_heard():
    table = new_table()
    table.merge([entry("b", 5, ALIVE, heartbeat=0), entry("y", 5, LEFT, heartbeat=0)], START_MS)
    rng = random.Random(1)
    assert {n for _ in range(20) for n in table.gossip_targets(rng, fanout=3)} == {"b", "y"}
    # b keeps beating, y falls silent: after dead_after it gets no more gossip
    heartbeat = 0
    now_ms = START_MS
    while now_ms < START_MS + DEAD_AFTER_MS:
        now_ms += TICK_MS
        heartbeat += 1
        table.merge([entry("b", 5, ALIVE, heartbeat=heartbeat)], now_ms)
        table.tick(now_ms)
    assert {n for _ in range(20) for n in table.gossip_targets(rng, fanout=3)} == {"b"}


def test_snapshot_is_wire_entries():
    table = new_table()
    table.merge([entry("b", 5, SUSPECT, 7, 2, 3)], START_MS)
    snapshot = table.snapshot()
    assert entry("b", 5, SUSPECT, 7, 2, 3) in snapshot
    assert ["a", "a:1", "a:2", START_MS, ALIVE, 0, 0, 1] in snapshot


def test_add_placeholder_is_outranked_by_any_news():
    table = new_table()
    table.add_placeholder("b", "b:1", "b:2", generation=4, now_ms=START_MS)
    assert view(table, "b") == (0, ALIVE, 0, 0)
    table.add_placeholder("b", "other:1", "", generation=9, now_ms=START_MS)  # no overwrite
    assert table.get("b").address == "b:1"
    table.merge([entry("b", 1, ALIVE, heartbeat=0)], START_MS)
    assert view(table, "b") == (1, ALIVE, 0, 0)


# -- property: merge order does not matter -------------------------------------------------------

gossip_entries = st.lists(
    st.builds(
        lambda node_id, incarnation, state, heartbeat, epoch: entry(node_id, incarnation, state, heartbeat, epoch),
        st.sampled_from(["b", "c", "d"]),
        st.integers(min_value=1, max_value=4),
        st.sampled_from(sorted(STATE_RANK)),
        st.integers(min_value=0, max_value=6),
        st.integers(min_value=0, max_value=3),
    ),
    max_size=8,
)


def states(table: MemberTable) -> dict:
    return {node_id: view(table, node_id) for node_id in table.members if node_id != table.self_id}


@settings(derandomize=True, deadline=None, max_examples=300)
@given(gossip_entries, gossip_entries)
def test_merging_two_snapshots_is_commutative(first, second):
    one, two = new_table("z"), new_table("z")
    one.merge(first, START_MS)
    one.merge(second, START_MS)
    two.merge(second, START_MS)
    two.merge(first, START_MS)
    assert states(one) == states(two)


@settings(derandomize=True, deadline=None, max_examples=300)
@given(gossip_entries, gossip_entries)
def test_merging_is_idempotent(first, second):
    once, twice = new_table("z"), new_table("z")
    once.merge(first, START_MS)
    once.merge(second, START_MS)
    twice.merge(first, START_MS)
    twice.merge(second, START_MS)
    twice.merge(second, START_MS)
    twice.merge(first, START_MS)
    assert states(once) == states(twice)
    # and merging a table's own snapshot back into it changes nothing
    before = states(once)
    assert once.merge(once.snapshot(), START_MS) == []
    assert states(once) == before


@settings(derandomize=True, deadline=None, max_examples=200)
@given(gossip_entries)
def test_merge_result_is_the_max_incarnation_then_worst_state(entries):
    table = new_table("z")
    table.merge(entries, START_MS)
    for node_id in {e[0] for e in entries}:
        mine = [e for e in entries if e[0] == node_id]
        top = max(e[3] for e in mine)
        at_top = [e for e in mine if e[3] == top]
        expected_state = max((e[4] for e in at_top), key=STATE_RANK.__getitem__)
        assert view(table, node_id) == (top, expected_state, max(e[5] for e in at_top), max(e[6] for e in at_top))

"""The partition map: plan_next, pullers_for, plan phases and the Config wire form."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkv.core.config import (
    MOVING,
    SETTLED,
    SWITCHED,
    Config,
    NodeAddress,
    PartitionPlan,
    PlanInputs,
    initial_config,
    needed,
    plan_next,
    pull_sources_needed,
    pullers_for,
    quorum_of,
    settled,
)
from zkv.core.placement import rank_owners

POOL = ("a", "b", "c", "d", "e", "f")
ADDRESSES = {node: NodeAddress(node, f"{node}:7000", f"{node}:8000") for node in POOL}
Q = quorum_of(3)  # 2


def make_config(epoch, ring, plans, replication=3, generations=None):
    ring = tuple(ring)
    mentioned = set(ring)
    for plan in plans:
        mentioned.update(plan.old, plan.new)
    return Config(epoch, len(plans), replication, ring, tuple(generations or (1,) * len(ring)),
                  tuple(ADDRESSES[n] for n in sorted(mentioned)), tuple(plans))


def settled_config(epoch, ring, partitions=8, replication=3):
    plans = [settled(rank_owners(p, tuple(ring), replication), epoch) for p in range(partitions)]
    return make_config(epoch, ring, plans, replication)


def inputs(ring, completions=(), adopted=None, responsive=None, generations=None):
    ring = tuple(sorted(ring))
    return PlanInputs(
        ring=ring,
        generations=generations or {n: 1 for n in POOL},
        addresses=dict(ADDRESSES),
        completions=frozenset(completions),
        adopted=adopted if adopted is not None else {},
        responsive=frozenset(responsive if responsive is not None else POOL),
    )


def moving(old, new, joined, complete=(), changed_at=6):
    return PartitionPlan(tuple(old), tuple(new), MOVING, tuple(complete), tuple(joined), changed_at)


# -- quorum arithmetic ------------------------------------------------------------------------

@pytest.mark.parametrize(("replication", "quorum"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_quorum_of(replication, quorum):
    assert quorum_of(replication) == quorum


@pytest.mark.parametrize(
    ("quorum", "members", "expected"),
    [(2, 3, 2), (2, 2, 2), (2, 1, 1), (3, 2, 2), (2, 0, 0), (1, 5, 1)],
)
def test_needed_caps_the_quorum_at_the_set_size(quorum, members, expected):
    assert needed(quorum, members) == expected


@pytest.mark.parametrize(
    ("set_size", "quorum", "expected"),
    [(3, 2, 2), (2, 2, 1), (1, 2, 1), (0, 2, 0), (5, 3, 3), (4, 3, 2), (3, 3, 1)],
)
def test_pull_sources_needed_intersects_every_write_quorum(set_size, quorum, expected):
    assert pull_sources_needed(set_size, quorum) == expected
    if set_size:
        # any `expected` sources meet any `needed` acknowledgers of the set
        assert expected + needed(quorum, set_size) > set_size


# -- pullers_for ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("old", "new", "pullers", "why"),
    [
        ("abc", "abd", "d", "a joiner replaces a leaver: 1 joiner + 2 acks - 1 leaver = 2 copies"),
        ("abc", "ade", "de", "two joiners for two leavers: 2 + 2 - 2 = 2"),
        ("a", "ab", "b", "growing: the old single copy plus the joiner"),
        ("ab", "abc", "c", "growing"),
        ("abc", "def", "def", "a full replacement: only joiners"),
        # shrinking below what the staying members can guarantee: they must pull too
        ("abc", "a", "a", "a write acked by {b, c} is not on a; 0 + 2 - 2 = 0 < 1"),
        ("abc", "ab", "ab", "a write acked by {b, c} misses a, one acked by {a, c} misses b: "
                            "0 + 2 - 1 = 1 < 2 = W of {a, b}"),
        ("abc", "bc", "bc", "the same shrink, the other way round"),
        ("ab", "a", "", "W=2 of {a, b} means a holds every write: 0 + 2 - 1 = 1 >= 1"),
        ("abc", "abc", "", "no change"),
    ],
)
def test_pullers_for(old, new, pullers, why):
    assert pullers_for(tuple(old), tuple(new), Q) == tuple(pullers), why


@settings(derandomize=True, deadline=None)
@given(st.sets(st.sampled_from(POOL), min_size=1, max_size=4), st.sets(st.sampled_from(POOL), min_size=1, max_size=4),
       st.integers(min_value=1, max_value=3))
def test_pullers_make_up_w_copies(old_set, new_set, quorum):
    old, new = tuple(sorted(old_set)), tuple(sorted(new_set))
    pullers = set(pullers_for(old, new, quorum))
    joining = new_set - old_set
    assert joining <= pullers <= new_set
    guaranteed = len(joining) + needed(quorum, len(old)) - len(old_set - new_set)
    assert guaranteed >= needed(quorum, len(new)) or pullers == new_set


# -- plan phases ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("plan", "read_set", "write_sets", "write_targets", "pending", "awaiting"),
    [
        (settled(("a", "b", "c"), 5), "abc", ["abc"], "abc", "", ""),
        (moving("abc", "abd", [("d", 6)]), "abc", ["abc", "abd"], "abcd", "d", "d"),
        (moving("abc", "ade", [("d", 6), ("e", 6)], complete=("d",)), "abc", ["abc", "ade"], "abcde", "e", "e"),
        # a staying puller still serves reads from its old copy: awaiting but not pending
        (moving("abc", "ab", [("a", 6), ("b", 6)]), "abc", ["abc", "ab"], "abc", "", "ab"),
        (PartitionPlan(("a", "b", "c"), ("a", "b", "d"), SWITCHED, (), (), 7), "abd", ["abc", "abd"], "abcd", "", ""),
    ],
)
def test_plan_sets_per_phase(plan, read_set, write_sets, write_targets, pending, awaiting):
    assert plan.read_set == tuple(read_set)
    assert plan.write_sets == tuple(tuple(s) for s in write_sets)
    assert plan.write_targets == tuple(write_targets)
    assert plan.holders() == plan.write_targets
    assert plan.pending == tuple(pending)
    assert plan.awaiting == tuple(awaiting)


def test_joined_at():
    plan = moving("abc", "ade", [("d", 6), ("e", 8)])
    assert (plan.joined_at("d"), plan.joined_at("e"), plan.joined_at("a")) == (6, 8, None)


# -- plan_next: joins -----------------------------------------------------------------------------

def test_nothing_to_change_gives_none():
    config = settled_config(5, "abc")
    assert plan_next(config, inputs("abc")) is None


def test_an_empty_ring_keeps_the_current_ring():
    config = settled_config(5, "abc")
    assert plan_next(config, inputs(())) is None


def test_a_join_moves_only_the_partitions_the_new_node_now_owns():
    config = settled_config(5, "abc")
    proposal = plan_next(config, inputs("abcd"))
    assert proposal.epoch == 6
    assert proposal.ring == ("a", "b", "c", "d")
    assert ADDRESSES["d"] in proposal.nodes
    moved = 0
    for partition, (before, after) in enumerate(zip(config.plans, proposal.plans)):
        target = rank_owners(partition, ("a", "b", "c", "d"), 3)
        if "d" in target:
            moved += 1
            assert after.phase == MOVING
            assert after.old == ("a", "b", "c") or set(after.old) == {"a", "b", "c"}
            assert after.new == target
            assert after.joined == (("d", 6),)
            assert after.complete == ()
            assert after.changed_at == 6
            assert after.read_set == before.new  # reads stay on the old owners
            assert after.pending == ("d",)
        else:
            assert after is before  # untouched, keeps its changed_at
    assert 0 < moved < len(config.plans)


def test_a_generation_change_alone_is_a_new_config():
    config = settled_config(5, "abc")
    proposal = plan_next(config, inputs("abc", generations={"a": 1, "b": 9, "c": 1}))
    assert proposal.epoch == 6
    assert proposal.generations == (1, 9, 1)
    assert all(after is before for after, before in zip(proposal.plans, config.plans))
    assert proposal.voter_generation("b") == 9


# -- plan_next: completions -----------------------------------------------------------------------

def one_partition(epoch, ring, plan):
    return make_config(epoch, ring, [plan])


def test_a_completion_for_the_joined_epoch_switches_the_partition():
    config = one_partition(6, "abd", moving("abc", "abd", [("d", 6)]))
    proposal = plan_next(config, inputs("abd", completions={("d", 0, 6)}))
    plan = proposal.plans[0]
    assert (plan.phase, plan.old, plan.new, plan.changed_at) == (SWITCHED, ("a", "b", "c"), ("a", "b", "d"), 7)
    assert plan.read_set == ("a", "b", "d")
    assert plan.write_sets == (("a", "b", "c"), ("a", "b", "d"))


@pytest.mark.parametrize(
    "completions",
    [
        set(),
        {("d", 0, 5)},  # a copy pulled for an older move of this partition
        {("d", 0, 7)},
        {("d", 1, 6)},  # another partition
        {("e", 0, 6)},  # not a puller
    ],
)
def test_completions_that_do_not_match_change_nothing(completions):
    config = one_partition(6, "abd", moving("abc", "abd", [("d", 6)]))
    assert plan_next(config, inputs("abd", completions=completions)) is None


def test_every_puller_must_report_before_the_switch():
    config = one_partition(6, "ade", moving("abc", "ade", [("d", 6), ("e", 6)]))
    first = plan_next(config, inputs("ade", completions={("d", 0, 6)}))
    plan = first.plans[0]
    assert (plan.phase, plan.complete, plan.changed_at) == (MOVING, ("d",), 7)
    assert plan.awaiting == ("e",)
    second = plan_next(first, inputs("ade", completions={("d", 0, 6), ("e", 0, 6)}))
    assert second.plans[0].phase == SWITCHED
    assert second.plans[0].changed_at == 8


# -- plan_next: SWITCHED -> SETTLED ------------------------------------------------------------------

SWITCHED_PLAN = PartitionPlan(("a", "b", "c"), ("a", "b", "d"), SWITCHED, (), (), 7)


@pytest.mark.parametrize(
    ("adopted", "responsive", "settles"),
    [
        # a network partition hides b and c (two of the old set) together: they are not
        # responsive, but they are not gone either, and at an older epoch they still make a
        # read quorum of the old set, so the old set must stay in the write quorum
        ({"a": 7, "b": 6, "c": 6, "d": 7}, "ad", False),
        ({"a": 7, "b": 7, "c": 6, "d": 7}, "ad", True),  # only c is cut off: one is no quorum
    ],
)
def test_switched_waits_for_a_read_quorum_of_the_old_set(adopted, responsive, settles):
    config = one_partition(7, "abd", SWITCHED_PLAN)
    proposal = plan_next(config, inputs("abd", adopted=adopted, responsive=responsive))
    assert (proposal is not None and proposal.plans[0] == settled(("a", "b", "d"), 8)) == settles


@pytest.mark.parametrize(
    ("adopted", "responsive", "settles"),
    [
        ({"a": 7, "b": 7, "c": 7, "d": 7}, "abcd", True),
        ({"a": 8, "b": 9, "c": 7, "d": 7}, "abcd", True),
        ({"a": 7, "b": 7, "c": 6, "d": 7}, "abcd", False),  # the leaver has not seen the switch
        ({"a": 7, "b": 7, "d": 7}, "abcd", False),  # nothing known of c
        ({"a": 7, "b": 7, "c": 6, "d": 7}, "abd", True),  # c is gone: nobody to wait for
        ({"a": 7, "b": 7, "c": 7, "d": 6}, "abcd", False),
    ],
)
def test_switched_settles_once_every_responsive_holder_adopted(adopted, responsive, settles):
    config = one_partition(7, "abd", SWITCHED_PLAN)
    proposal = plan_next(config, inputs("abd", adopted=adopted, responsive=responsive))
    if settles:
        assert proposal.plans[0] == settled(("a", "b", "d"), 8)
    else:
        assert proposal is None


# -- plan_next: shrinking sets ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("ring_after", "pullers"),
    [
        ("a", ("a",)),  # a must merge b or c: a write acked by {b, c} is not on a
        ("ab", ("a", "b")),  # {a, b} must each hold every write: each merges the others
    ],
)
def test_shrinking_makes_staying_members_pull(ring_after, pullers):
    config = one_partition(5, "abc", settled(("a", "b", "c"), 5))
    proposal = plan_next(config, inputs(ring_after))
    plan = proposal.plans[0]
    assert plan.phase == MOVING
    assert set(plan.new) == set(ring_after)
    assert {node for node, _ in plan.joined} == set(pullers)
    assert all(epoch == 6 for _, epoch in plan.joined)
    assert plan.pending == ()  # staying members keep serving reads from old
    assert plan.read_set == ("a", "b", "c")


def test_a_shrink_that_loses_no_write_switches_at_once():
    config = one_partition(5, "ab", settled(("a", "b"), 5))
    proposal = plan_next(config, inputs("a"))
    assert proposal.plans[0] == PartitionPlan(("a", "b"), ("a",), SWITCHED, (), (), 6)


# -- plan_next: the target moves during a move --------------------------------------------------------

def test_a_new_target_mid_move_keeps_completed_pullers():
    config = one_partition(7, "ade", moving("abc", "ade", [("d", 6), ("e", 6)], complete=("d",), changed_at=7))
    proposal = plan_next(config, inputs("adf"))
    plan = proposal.plans[0]
    assert plan.phase == MOVING
    assert plan.old == ("a", "b", "c")
    assert set(plan.new) == {"a", "d", "f"}
    assert dict(plan.joined) == {"d": 6, "f": 8}  # d keeps the epoch it joined at
    assert plan.complete == ("d",)
    assert plan.awaiting == ("f",)
    assert plan.changed_at == 8


def test_a_new_target_whose_pullers_are_all_complete_switches_at_once():
    config = one_partition(7, "ade", moving("abc", "ade", [("d", 6), ("e", 6)], complete=("d",), changed_at=7))
    proposal = plan_next(config, inputs("abd"))
    plan = proposal.plans[0]
    assert (plan.phase, plan.old, set(plan.new), plan.changed_at) == (SWITCHED, ("a", "b", "c"), {"a", "b", "d"}, 8)
    assert (plan.complete, plan.joined) == ((), ())


def test_a_move_back_to_the_old_set_is_abandoned():
    config = one_partition(6, "abd", moving("abc", "abd", [("d", 6)]))
    proposal = plan_next(config, inputs("abc", completions={("d", 0, 6)}))
    assert proposal.plans[0] == settled(("a", "b", "c"), 7)


def test_a_switched_plan_finishes_before_following_a_new_target():
    config = one_partition(7, "abd", SWITCHED_PLAN)
    # d leaves the ring while c has not adopted the switch yet: the plan waits
    behind = plan_next(config, inputs("abc", adopted={"a": 7, "b": 7, "c": 6, "d": 7}))
    assert behind is not None and behind.ring == ("a", "b", "c")
    assert behind.plans[0] is config.plans[0]
    done = plan_next(config, inputs("abc", adopted={n: 7 for n in "abcd"}))
    assert done.plans[0] == settled(("a", "b", "d"), 8)
    again = plan_next(done, inputs("abc", adopted={n: 8 for n in "abcd"}))
    assert again.plans[0].phase == MOVING
    assert again.plans[0].old == ("a", "b", "d")


# -- Config helpers and the wire form -------------------------------------------------------------------

def test_initial_config():
    me = ADDRESSES["a"]
    config = initial_config(me, generation=42, partitions=4, replication=3)
    assert (config.epoch, config.partitions, config.replication, config.ring) == (1, 4, 3, ("a",))
    assert config.generations == (42,)
    assert config.nodes == (me,)
    assert all(plan == settled(("a",), 1) for plan in config.plans)
    assert config.quorum == 2


def test_config_lookups():
    config = make_config(6, "abc", [moving("abc", "abd", [("d", 6)]), settled(("a", "b", "c"), 5)],
                         generations=(3, 4, 5))
    assert [config.voter_generation(n) for n in "abcd"] == [3, 4, 5, None]
    assert config.address_of("d") == ADDRESSES["d"]
    assert config.address_of("z") is None
    assert config.holders() == {"a", "b", "c", "d"}


def sample_config():
    return make_config(9, "abde", [
        settled(("a", "b", "d"), 4),
        moving("abc", "ade", [("d", 6), ("e", 8)], complete=("d",), changed_at=8),
        PartitionPlan(("a", "b", "c"), ("a", "b", "d"), SWITCHED, (), (), 9),
    ], generations=(1, 2, 3, 4))


def test_config_wire_round_trip():
    config = sample_config()
    assert Config.from_wire(config.to_wire()) == config
    # and through msgpack, which turns every tuple into a list
    assert Config.from_wire(msgpack.unpackb(msgpack.packb(config.to_wire()), raw=False)) == config


def _mutated(mutate):
    raw = sample_config().to_wire()
    mutate(raw)
    return raw


def _set(path, value):
    def mutate(raw):
        target = raw
        for index in path[:-1]:
            target = target[index]
        target[path[-1]] = value
    return mutate


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        (None, "malformed config"),
        (42, "malformed config"),
        ([], "malformed config"),
        (_mutated(lambda raw: raw.pop()), "malformed config"),  # six fields
        (_mutated(lambda raw: raw.append(1)), "malformed config"),
        (_mutated(_set([0], "nine")), "malformed config"),
        (_mutated(_set([1], None)), "malformed config"),
        (_mutated(_set([1], 4)), "plan count"),
        (_mutated(_set([1], 0)), "partitions 0 is not a positive integer"),
        (_mutated(_set([4], [1, 2])), "ring and generations"),
        (_mutated(_set([4], ["x", 2, 3, 4])), "malformed config"),
        (_mutated(_set([5], [["a", "a:1"]])), "malformed config"),  # address with two fields
        (_mutated(_set([6, 0], ["a"])), "malformed config"),  # plan with one field
        (_mutated(_set([6, 1, 4], [["d"]])), "malformed config"),  # joined entry without epoch
        (_mutated(_set([6, 1, 4], 5)), "malformed config"),
        (_mutated(_set([6], None)), "malformed config"),
    ],
)
def test_config_from_wire_rejects_malformed_input(raw, complaint):
    with pytest.raises(ValueError, match=complaint):
        Config.from_wire(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(_mutated(_set([6, 0, 5], "x")), id="changed_at-str"),
        pytest.param(_mutated(_set([6, 0, 5], None)), id="changed_at-none"),
        pytest.param(_mutated(_set([6, 0, 2], 7)), id="phase-out-of-range"),
        pytest.param(_mutated(_set([6, 0, 0], [1, 2, 3])), id="old-not-node-ids"),
        pytest.param(_mutated(_set([6, 1, 4], [["d", "six"]])), id="joined-epoch-str"),
    ],
)
def test_config_from_wire_rejects_plans_with_wrong_field_types(raw):
    with pytest.raises(ValueError, match="malformed config"):
        Config.from_wire(raw)


# -- property: random ring changes and completion reports --------------------------------------------

def check_step(previous: Config, proposal: Config, given_inputs: PlanInputs) -> None:
    """Invariants of one plan_next step (previous -> proposal)."""
    quorum = previous.quorum
    epoch = proposal.epoch
    assert epoch == previous.epoch + 1
    assert len(proposal.plans) == proposal.partitions == previous.partitions
    assert proposal.ring == (given_inputs.ring or previous.ring)
    assert len(proposal.generations) == len(proposal.ring)
    known = {node.node_id for node in proposal.nodes}
    for partition, (before, after) in enumerate(zip(previous.plans, proposal.plans)):
        assert after.read_set, f"partition {partition} has nobody to read from"
        assert after.changed_at <= epoch
        assert set(after.write_targets) <= known
        pullers = tuple(node for node, _ in after.joined)
        assert set(after.complete) <= set(pullers)
        assert all(since <= epoch for _, since in after.joined)
        if after.phase == SETTLED:
            assert after.old == after.new and after.joined == () and after.complete == ()
        if after.phase == MOVING:
            assert after.read_set == after.old
            assert set(pullers) == set(pullers_for(after.old, after.new, quorum))
            assert after.awaiting, "a MOVING plan with nothing left to pull should have switched"
            # W copies: whatever the leavers held, the new set ends with W copies of every write
            arithmetic = (len(set(after.new) - set(after.old)) + needed(quorum, len(after.old))
                          - len(set(after.old) - set(after.new)))
            assert arithmetic >= needed(quorum, len(after.new)) or set(after.new) <= set(pullers)
        if after != before and not (after.phase == before.phase == SETTLED and set(after.new) == set(before.new)):
            assert after.changed_at == epoch, "a changed plan must bump changed_at (stale requests)"
        if before.phase == SETTLED and after.phase == SETTLED:
            assert set(after.new) == set(before.new), "owners changed without a move"
        newly_switched = after.phase == SWITCHED and not (
            before.phase == SWITCHED and before.old == after.old and before.new == after.new)
        if newly_switched:
            assert before.phase in (SETTLED, MOVING)
            if before.phase == MOVING and set(before.new) == set(after.new):
                for node, since in before.joined:
                    assert node in before.complete or (node, partition, since) in given_inputs.completions, (
                        f"partition {partition} switched before {node} reported its copy")
            else:
                previously_complete = set(before.complete) if before.phase == MOVING else set()
                assert set(pullers_for(after.old, after.new, quorum)) <= previously_complete
        if before.phase == MOVING and after.phase == SETTLED:
            assert set(after.new) == set(before.old), "reads left the old set without a switch"
        if before.phase == SWITCHED and after.phase == SETTLED:
            assert after.new == before.new
            for node in set(before.old) | set(before.new):
                if node in given_inputs.responsive:
                    assert given_inputs.adopted.get(node, 0) >= before.changed_at


@settings(derandomize=True, max_examples=150, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(min_value=1, max_value=30),
       st.integers(min_value=1, max_value=5))
def test_plan_next_invariants_over_random_histories(rng, steps, replication):
    config = make_config(1, "a", [settled(("a",), 1) for _ in range(8)], replication=replication)
    for _ in range(steps):
        ring = set(config.ring)
        action = rng.random()
        if action < 0.3:
            ring.add(rng.choice(POOL))
        elif action < 0.5 and len(ring) > 1:
            ring.discard(rng.choice(sorted(ring)))
        elif action < 0.6:
            ring = set(rng.sample(POOL, rng.randint(1, len(POOL))))
        elif action < 0.65:
            ring = set()  # no candidates known: plan_next keeps the current ring
        completions = set()
        for partition, plan in enumerate(config.plans):
            for node, since in plan.joined:
                roll = rng.random()
                if roll < 0.5:
                    completions.add((node, partition, since))
                elif roll < 0.6:
                    completions.add((node, partition, since - 1))  # an older move's copy
        adopted = {n: config.epoch - (rng.random() < 0.3) for n in POOL}
        responsive = {n for n in POOL if rng.random() < 0.9}
        given_inputs = inputs(ring, completions, adopted, responsive)
        proposal = plan_next(config, given_inputs)
        if proposal is None:
            continue
        check_step(config, proposal, given_inputs)
        assert Config.from_wire(proposal.to_wire()) == proposal
        config = proposal

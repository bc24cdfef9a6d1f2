"""Paxos for the partition map: Acceptor and Proposer driven by hand, and a safety property
over random message schedules (delivered, dropped, duplicated, reordered)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkv import wire
from zkv.core import messages
from zkv.core.paxos import (
    ACCEPTING,
    IDLE,
    PREPARING,
    ROUND_TIMEOUT_MS,
    Acceptor,
    AcceptorState,
    Proposer,
    ballot_from_wire,
)

INSTANCE = 6  # deciding epoch 6: acceptors have adopted epoch 5
ADOPTED = INSTANCE - 1
VOTERS = ("a1", "a2", "a3")
OWN_VALUE = ["own config"]


def promise(sender, ballot, ok=True, accepted_ballot=None, accepted_value=None, instance=INSTANCE, committed=ADOPTED):
    return messages.Promise(sender, instance, list(ballot), ok,
                            list(accepted_ballot) if accepted_ballot else None, accepted_value, committed)


def accepted(sender, ballot, ok=True, instance=INSTANCE):
    return messages.Accepted(sender, instance, list(ballot), ok, ADOPTED)


def preparing(proposer_id="p1", voters=VOTERS) -> Proposer:
    proposer = Proposer(proposer_id)
    sends = proposer.propose(INSTANCE, OWN_VALUE, voters, now_ms=1000)
    assert [target for target, _ in sends] == list(voters)
    assert all(message == messages.Prepare(proposer_id, INSTANCE, list(proposer.ballot)) for _, message in sends)
    return proposer


# -- ballots and acceptor state ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([3, "p1"], (3, "p1")),
        ([0, ""], (0, "")),
        (None, None),
        ([3], None),
        ([3, "p1", 1], None),
        (["3", "p1"], None),
        ([True, "p1"], None),  # bool is not a round
        ([3, 1], None),
        ((3, "p1"), None),  # tuples never come off the wire
        ("3p1", None),
    ],
)
def test_ballot_from_wire(raw, expected):
    assert ballot_from_wire(raw) == expected


@pytest.mark.parametrize(
    "state",
    [
        AcceptorState(),
        AcceptorState(6, (2, "p1"), None, None),
        AcceptorState(6, (3, "p2"), (2, "p1"), [5, 8, 3, ["a"], [1], [["a", "a", ""]], []]),
        AcceptorState(2**40, (2**31, "ключ"), (1, "x"), []),
    ],
)
def test_acceptor_state_bytes_round_trip(state):
    assert AcceptorState.from_bytes(state.to_bytes()) == state


# -- acceptor ----------------------------------------------------------------------------------------

def test_acceptor_promises_a_first_ballot_and_marks_itself_dirty():
    acceptor = Acceptor()
    assert acceptor.on_prepare(INSTANCE, (1, "p1"), ADOPTED, True) == (True, None, None)
    assert acceptor.state == AcceptorState(INSTANCE, (1, "p1"), None, None)
    assert acceptor.dirty


@pytest.mark.parametrize(
    ("second", "ok"),
    [((1, "p1"), False), ((1, "p0"), False), ((0, "p9"), False), ((1, "p2"), True), ((2, "p0"), True)],
)
def test_acceptor_refuses_a_prepare_not_above_its_promise(second, ok):
    acceptor = Acceptor()
    acceptor.on_prepare(INSTANCE, (1, "p1"), ADOPTED, True)
    acceptor.dirty = False
    assert acceptor.on_prepare(INSTANCE, second, ADOPTED, True)[0] is ok
    assert acceptor.state.promised == (second if ok else (1, "p1"))
    assert acceptor.dirty is ok


def test_acceptor_reports_what_it_accepted_in_later_promises():
    acceptor = Acceptor()
    acceptor.on_prepare(INSTANCE, (1, "p1"), ADOPTED, True)
    assert acceptor.on_accept(INSTANCE, (1, "p1"), ["v1"], ADOPTED, True)
    assert acceptor.on_prepare(INSTANCE, (2, "p2"), ADOPTED, True) == (True, (1, "p1"), ["v1"])


@pytest.mark.parametrize(
    ("accept_ballot", "ok"),
    [((2, "p1"), True), ((3, "p0"), True), ((1, "p9"), False), ((2, "p0"), False)],
)
def test_acceptor_accepts_only_at_or_above_its_promise(accept_ballot, ok):
    acceptor = Acceptor()
    acceptor.on_prepare(INSTANCE, (2, "p1"), ADOPTED, True)
    assert acceptor.on_accept(INSTANCE, accept_ballot, ["v"], ADOPTED, True) is ok
    assert acceptor.state.accepted_ballot == (accept_ballot if ok else None)
    assert acceptor.state.accepted_value == (["v"] if ok else None)
    if ok:
        assert acceptor.state.promised == accept_ballot  # a later lower prepare is refused


def test_acceptor_accepts_without_a_prior_promise():
    acceptor = Acceptor()
    assert acceptor.on_accept(INSTANCE, (1, "p1"), ["v"], ADOPTED, True)
    assert not acceptor.on_prepare(INSTANCE, (1, "p1"), ADOPTED, True)[0]


@pytest.mark.parametrize("instance", [ADOPTED, ADOPTED + 2, 0, INSTANCE + 100])
def test_acceptor_votes_only_in_the_instance_after_its_adopted_epoch(instance):
    acceptor = Acceptor()
    assert acceptor.on_prepare(instance, (1, "p1"), ADOPTED, True) == (False, None, None)
    assert not acceptor.on_accept(instance, (1, "p1"), ["v"], ADOPTED, True)
    assert acceptor.state == AcceptorState()
    assert not acceptor.dirty


def test_acceptor_that_may_not_vote_refuses_everything():
    acceptor = Acceptor()
    assert acceptor.on_prepare(INSTANCE, (1, "p1"), ADOPTED, False) == (False, None, None)
    assert not acceptor.on_accept(INSTANCE, (1, "p1"), ["v"], ADOPTED, False)
    assert acceptor.state == AcceptorState()


def test_acceptor_starts_afresh_in_the_next_instance():
    acceptor = Acceptor()
    acceptor.on_accept(INSTANCE, (9, "p1"), ["v"], ADOPTED, True)
    # epoch 6 was decided and adopted; instance 7 knows nothing of instance 6's ballots
    assert acceptor.on_prepare(INSTANCE + 1, (1, "p2"), ADOPTED + 1, True) == (True, None, None)
    assert acceptor.state == AcceptorState(INSTANCE + 1, (1, "p2"), None, None)


def test_acceptor_restored_from_bytes_keeps_its_promise():
    acceptor = Acceptor()
    acceptor.on_prepare(INSTANCE, (4, "p1"), ADOPTED, True)
    restarted = Acceptor(AcceptorState.from_bytes(acceptor.state.to_bytes()))
    assert not restarted.on_prepare(INSTANCE, (3, "p2"), ADOPTED, True)[0]
    assert not restarted.on_accept(INSTANCE, (3, "p2"), ["v"], ADOPTED, True)


# -- proposer ----------------------------------------------------------------------------------------

def test_propose_uses_a_fresh_ballot_each_round():
    proposer = Proposer("p1")
    proposer.propose(INSTANCE, OWN_VALUE, VOTERS, 1000)
    first = proposer.ballot
    proposer.observe_round((7, "p2"))
    proposer.propose(INSTANCE, OWN_VALUE, VOTERS, 2000)
    assert proposer.ballot > first
    assert proposer.ballot == (8, "p1")
    assert proposer.phase == PREPARING and proposer.busy


def test_a_majority_of_empty_promises_sends_accept_with_its_own_value():
    proposer = preparing()
    assert proposer.on_promise(promise("a1", proposer.ballot)) == []
    sends = proposer.on_promise(promise("a2", proposer.ballot))
    assert proposer.phase == ACCEPTING
    assert sends == [(voter, messages.Accept("p1", INSTANCE, list(proposer.ballot), OWN_VALUE)) for voter in VOTERS]


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_the_value_accepted_with_the_highest_ballot_is_proposed_instead(order):
    proposer = Proposer("p9")
    proposer.observe_round((5, "p0"))
    proposer.propose(INSTANCE, OWN_VALUE, VOTERS, 1000)
    reports = [((3, "p1"), ["three"]), ((3, "p0"), ["lower writer"])]
    first, second = (reports[i] for i in order)
    assert proposer.on_promise(promise("a1", proposer.ballot, accepted_ballot=first[0], accepted_value=first[1])) == []
    sends = proposer.on_promise(promise("a2", proposer.ballot, accepted_ballot=second[0], accepted_value=second[1]))
    assert sends == [(voter, messages.Accept("p9", INSTANCE, [6, "p9"], ["three"])) for voter in VOTERS]


def test_an_accepted_value_from_one_promise_beats_empty_promises():
    proposer = preparing()
    proposer.on_promise(promise("a1", proposer.ballot))
    sends = proposer.on_promise(promise("a3", proposer.ballot, accepted_ballot=(0, "p0"), accepted_value=["old"]))
    assert [message.value for _, message in sends] == [["old"]] * 3


def test_a_late_promise_with_a_higher_accepted_value_after_majority_changes_nothing():
    proposer = preparing()
    proposer.on_promise(promise("a1", proposer.ballot))
    sends = proposer.on_promise(promise("a2", proposer.ballot))
    assert sends[0][1].value == OWN_VALUE
    assert proposer.on_promise(promise("a3", proposer.ballot, accepted_ballot=(9, "x"), accepted_value=["late"])) == []


@pytest.mark.parametrize(
    ("bad_second_promise", "why"),
    [
        (lambda b: promise("a1", b), "a duplicate of the first promise"),
        (lambda b: promise("zz", b), "not a voter"),
        (lambda b: promise("a2", b, ok=False), "a refusal"),
        (lambda b: promise("a2", (b[0] + 1, b[1])), "another ballot"),
        (lambda b: promise("a2", b, instance=INSTANCE + 1), "another instance"),
    ],
)
def test_promises_that_do_not_count(bad_second_promise, why):
    proposer = preparing()
    proposer.on_promise(promise("a1", proposer.ballot))
    assert proposer.on_promise(bad_second_promise(proposer.ballot)) == [], why
    assert proposer.phase == PREPARING
    assert proposer.promised_by == {"a1"}
    # the real second promise still completes the majority
    assert len(proposer.on_promise(promise("a3", proposer.ballot))) == 3


def test_a_promise_from_a_non_voter_does_not_lend_its_accepted_value():
    proposer = preparing()
    proposer.on_promise(promise("outsider", proposer.ballot, accepted_ballot=(0, "x"), accepted_value=["evil"]))
    proposer.on_promise(promise("a1", proposer.ballot))
    sends = proposer.on_promise(promise("a2", proposer.ballot))
    assert sends[0][1].value == OWN_VALUE


def _accepting() -> Proposer:
    proposer = preparing()
    proposer.on_promise(promise("a1", proposer.ballot))
    proposer.on_promise(promise("a2", proposer.ballot))
    return proposer


def test_a_majority_of_accepted_chooses_the_value():
    proposer = _accepting()
    assert proposer.on_accepted(accepted("a3", proposer.ballot)) is None
    assert proposer.on_accepted(accepted("a3", proposer.ballot)) is None  # duplicate
    assert proposer.on_accepted(accepted("zz", proposer.ballot)) is None  # not a voter
    assert proposer.on_accepted(accepted("a1", proposer.ballot, ok=False)) is None  # refusal
    assert proposer.on_accepted(accepted("a1", (99, "p1"))) is None  # another ballot
    assert proposer.phase == ACCEPTING
    assert proposer.on_accepted(accepted("a2", proposer.ballot)) == OWN_VALUE
    assert proposer.phase == IDLE and not proposer.busy
    assert proposer.on_accepted(accepted("a1", proposer.ballot)) is None  # chosen once


def test_accepted_while_preparing_is_ignored():
    proposer = preparing()
    assert proposer.on_accepted(accepted("a1", proposer.ballot)) is None
    assert proposer.on_accepted(accepted("a2", proposer.ballot)) is None


def test_round_expiry_and_abandon():
    proposer = preparing()
    assert not proposer.expired(1000 + ROUND_TIMEOUT_MS - 1)
    assert proposer.expired(1000 + ROUND_TIMEOUT_MS)
    proposer.abandon()
    assert not proposer.busy
    assert not proposer.expired(10**9)
    assert proposer.on_promise(promise("a1", proposer.ballot)) == []


def test_one_voter_is_its_own_majority():
    proposer = preparing(voters=("a1",))
    assert len(proposer.on_promise(promise("a1", proposer.ballot))) == 1
    assert proposer.on_accepted(accepted("a1", proposer.ballot)) == OWN_VALUE


# -- property: at most one value is chosen -------------------------------------------------------------

def acceptor_turn(node_id, acceptor, message):
    """What NodeCore does with a Prepare or Accept: the acceptor's reply."""
    ballot = ballot_from_wire(message.ballot)
    if isinstance(message, messages.Prepare):
        ok, accepted_ballot, accepted_value = acceptor.on_prepare(message.instance, ballot, ADOPTED, True)
        hint = accepted_ballot if ok else acceptor.state.promised
        return messages.Promise(node_id, message.instance, message.ballot, ok, list(hint) if hint else None,
                                accepted_value if ok else None, ADOPTED)
    ok = acceptor.on_accept(message.instance, ballot, message.value, ADOPTED, True)
    return messages.Accepted(node_id, message.instance, message.ballot, ok, ADOPTED)


PROPOSE, DROP, DUPLICATE, RESTART_ACCEPTOR, DELIVER = range(5)
# delivery is the common case; proposals often enough that rounds overlap
ACTION_MIX = [PROPOSE] * 2 + [DROP, DUPLICATE, RESTART_ACCEPTOR] + [DELIVER] * 8
DRAIN_STEPS_MAX = 500


class PaxosWorld:
    """Acceptors and proposers joined by a list used as the network (any order, loss, duplicates)."""

    def __init__(self, acceptor_ids, proposer_ids):
        self.acceptor_ids = acceptor_ids
        self.proposer_ids = proposer_ids
        self.acceptors = {node: Acceptor() for node in acceptor_ids}
        self.proposers = {node: Proposer(node) for node in proposer_ids}
        self.network: list[tuple[str, bytes]] = []  # (destination, frame)
        self.votes: dict[tuple, set[str]] = {}  # ballot -> acceptors that accepted it
        self.ballot_values: dict[tuple, list] = {}
        self.chosen_by_acceptors: set[tuple] = set()
        self.chosen_by_proposers: list[list] = []
        self.majority = len(acceptor_ids) // 2 + 1
        self.rounds = 0

    def send(self, destination, message):
        self.network.append((destination, wire.encode(message)))

    def step(self, action, pick):
        if action == PROPOSE or not self.network:
            proposer_id = self.proposer_ids[pick % len(self.proposer_ids)]
            self.rounds += 1
            value = [f"{proposer_id}-{self.rounds}"]
            for target, message in self.proposers[proposer_id].propose(INSTANCE, value, self.acceptor_ids, 0):
                self.send(target, message)
        elif action == DROP:
            self.network.pop(pick % len(self.network))
        elif action == DUPLICATE:
            self.network.append(self.network[pick % len(self.network)])
        elif action == RESTART_ACCEPTOR:  # from its persisted state
            node = self.acceptor_ids[pick % len(self.acceptor_ids)]
            self.acceptors[node] = Acceptor(AcceptorState.from_bytes(self.acceptors[node].state.to_bytes()))
        else:
            assert action == DELIVER
            self.deliver(*self.network.pop(pick % len(self.network)))

    def deliver(self, destination, frame):
        message = wire.decode(frame)
        if destination in self.acceptors:
            reply = acceptor_turn(destination, self.acceptors[destination], message)
            if isinstance(reply, messages.Accepted) and reply.ok:
                ballot = tuple(reply.ballot)
                self.votes.setdefault(ballot, set()).add(destination)
                assert self.ballot_values.setdefault(ballot, message.value) == message.value, "two values, one ballot"
                if len(self.votes[ballot]) >= self.majority:
                    self.chosen_by_acceptors.add(tuple(message.value))
            self.send(message.sender, reply)
            return
        proposer = self.proposers[destination]
        if isinstance(message, messages.Promise):
            proposer.observe_round(ballot_from_wire(message.accepted_ballot))
            for target, out in proposer.on_promise(message):
                self.send(target, out)
        else:
            chosen = proposer.on_accepted(message)
            if chosen is not None:
                self.chosen_by_proposers.append(chosen)

    def drain(self):
        for _ in range(DRAIN_STEPS_MAX):
            if not self.network:
                return
            self.deliver(*self.network.pop(0))


def run_schedule(acceptor_ids, proposer_ids, schedule):
    """Play the random schedule, then deliver what is left in order; returns what was chosen."""
    world = PaxosWorld(acceptor_ids, proposer_ids)
    for action, pick in schedule:
        world.step(action, pick)
    world.drain()
    return world.chosen_by_acceptors, world.chosen_by_proposers


schedules = st.lists(st.tuples(st.sampled_from(ACTION_MIX), st.integers(min_value=0, max_value=1000)),
                     max_size=300)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(st.sampled_from([("a1", "a2", "a3"), ("a1", "a2", "a3", "a4", "a5")]),
       st.sampled_from([("p1", "p2"), ("p1", "p2", "p3")]), schedules)
def test_at_most_one_value_is_chosen(acceptor_ids, proposer_ids, schedule):
    chosen_by_acceptors, chosen_by_proposers = run_schedule(acceptor_ids, proposer_ids, schedule)
    assert len(chosen_by_acceptors) <= 1, chosen_by_acceptors
    for chosen in chosen_by_proposers:
        assert (tuple(chosen),) == tuple(chosen_by_acceptors), "a proposer learned a value no majority accepted"


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(min_value=50, max_value=400),
       st.sampled_from([2, 3]), st.sampled_from([3, 5]))
def test_at_most_one_value_is_chosen_over_long_schedules(rng, steps, proposers_count, acceptors_count):
    # Long schedules make overlapping rounds (acceptors holding different values) common.
    world = PaxosWorld(tuple(f"a{i}" for i in range(acceptors_count)), tuple(f"p{i}" for i in range(proposers_count)))
    for _ in range(steps):
        world.step(rng.choice(ACTION_MIX), rng.randrange(1000))
    world.drain()
    assert len(world.chosen_by_acceptors) <= 1, world.chosen_by_acceptors
    for chosen in world.chosen_by_proposers:
        assert (tuple(chosen),) == tuple(world.chosen_by_acceptors)


def test_the_schedule_simulation_can_choose_a_value():
    # a smoke check that the property above is not vacuous: a clean run chooses p1's value
    chosen_by_acceptors, chosen_by_proposers = run_schedule(("a1", "a2", "a3"), ("p1", "p2"), [(PROPOSE, 0)])
    assert chosen_by_acceptors == {("p1-1",)}
    assert chosen_by_proposers == [["p1-1"]]
    # a later round by p2 learns the chosen value and chooses it again, never its own
    schedule = [(PROPOSE, 0)] + [(DELIVER, 0)] * 12 + [(PROPOSE, 1)]  # p1's round completes first
    chosen_by_acceptors, chosen_by_proposers = run_schedule(("a1", "a2", "a3"), ("p1", "p2"), schedule)
    assert chosen_by_acceptors == {("p1-1",)}
    assert chosen_by_proposers == [["p1-1"], ["p1-1"]]


def test_two_competing_proposers_agree_on_the_first_chosen_value():
    # p1 gets its value accepted by a1 only; p2 then prepares with a higher ballot, learns it from a1
    # (highest accepted) and must propose p1's value, not its own.
    acceptors = {node: Acceptor() for node in VOTERS}
    p1, p2 = Proposer("p1"), Proposer("p2")
    p1.propose(INSTANCE, ["p1 value"], VOTERS, 0)
    for node in ("a1", "a2"):
        sends = p1.on_promise(acceptor_turn(node, acceptors[node], messages.Prepare("p1", INSTANCE, list(p1.ballot))))
    accept = sends[0][1]
    acceptor_turn("a1", acceptors["a1"], accept)  # only a1 receives it
    p2.observe_round(p1.ballot)
    p2.propose(INSTANCE, ["p2 value"], VOTERS, 0)
    prepare = messages.Prepare("p2", INSTANCE, list(p2.ballot))
    assert p2.ballot > p1.ballot
    for node in ("a1", "a3"):
        sends = p2.on_promise(acceptor_turn(node, acceptors[node], prepare))
    assert all(message.value == ["p1 value"] for _, message in sends)
    # p1's late Accept is refused by a3, which promised p2's higher ballot
    assert acceptor_turn("a3", acceptors["a3"], accept).ok is False

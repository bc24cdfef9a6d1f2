"""Agreement on the next partition map: one single-decree Paxos instance per epoch.

Instance e+1 decides the config of epoch e+1. Its acceptors are the ring
members of config e, each with the acceptor generation listed there; a
majority of them must accept. The proposer is the claimant (the lowest-id up
member that is not leaving), so there is normally one; if two race, ballots
sort it out and the loser retries later with a fresh plan.

Why consensus at all: a map change decided by only part of the cluster (say,
the minority side of a network partition declaring the majority dead) would
let two sides count quorums over different replica sets. With Paxos, a side
without a majority of the current voters cannot change the map.

Acceptor state (the instance, the promised ballot, the accepted ballot and
value) must survive restarts to be safe. Durable nodes persist it in the turn's
storage transaction before any reply leaves. A node that lost it (memory
storage, wiped data dir) starts with a new *generation*; a config lists the
generation allowed to vote for each ring member, so an amnesiac acceptor votes
again only once a config naming its new generation has been decided.

    Proposer                              Acceptor (per instance)
    --------                              ------------------------
    Prepare(instance, ballot)   ------->  promise if ballot > promised
                                <-------  Promise(accepted ballot/value, if any)
    majority promised: value = accepted value with the highest ballot, else own
    Accept(instance, ballot, v) ------->  accept if ballot >= promised
                                <-------  Accepted
    majority accepted: v is chosen -> Commit(v) to everyone
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from zkv.core import messages

Ballot = tuple[int, str]

ROUND_TIMEOUT_MS = 1000


def ballot_from_wire(raw: object) -> Ballot | None:
    if isinstance(raw, list) and len(raw) == 2 and type(raw[0]) is int and isinstance(raw[1], str):
        return (raw[0], raw[1])
    return None


@dataclass(slots=True)
class AcceptorState:
    instance: int = 0
    promised: Ballot | None = None
    accepted_ballot: Ballot | None = None
    accepted_value: list | None = None

    def to_bytes(self) -> bytes:
        return msgpack.packb([self.instance, self.promised and list(self.promised),
                              self.accepted_ballot and list(self.accepted_ballot), self.accepted_value],
                             use_bin_type=True)

    @classmethod
    def from_bytes(cls, blob: bytes) -> AcceptorState:
        instance, promised, accepted_ballot, accepted_value = msgpack.unpackb(blob, raw=False)
        return cls(instance, ballot_from_wire(promised), ballot_from_wire(accepted_ballot), accepted_value)


class Acceptor:
    """Votes in the instance right after the epoch this node has adopted."""

    def __init__(self, state: AcceptorState | None = None) -> None:
        self.state = state or AcceptorState()
        self.dirty = False  # True when state changed and must be persisted before replying

    def _enter(self, instance: int) -> None:
        if self.state.instance != instance:
            self.state = AcceptorState(instance)

    def on_prepare(self, instance: int, ballot: Ballot, adopted_epoch: int, may_vote: bool
                   ) -> tuple[bool, Ballot | None, list | None]:
        if not may_vote or instance != adopted_epoch + 1:
            return False, None, None
        self._enter(instance)
        if self.state.promised is not None and ballot <= self.state.promised:
            return False, None, None
        self.state.promised = ballot
        self.dirty = True
        return True, self.state.accepted_ballot, self.state.accepted_value

    def on_accept(self, instance: int, ballot: Ballot, value: list, adopted_epoch: int, may_vote: bool) -> bool:
        if not may_vote or instance != adopted_epoch + 1:
            return False
        self._enter(instance)
        if self.state.promised is not None and ballot < self.state.promised:
            return False
        self.state.promised = ballot
        self.state.accepted_ballot = ballot
        self.state.accepted_value = value
        self.dirty = True
        return True


IDLE = "idle"
PREPARING = "preparing"
ACCEPTING = "accepting"


class Proposer:
    """Drives one instance at a time; the caller supplies voters, value and time."""

    def __init__(self, self_id: str) -> None:
        self.self_id = self_id
        self.phase = IDLE
        self.round_seen = 0
        self.instance = 0
        self.ballot: Ballot = (0, self_id)
        self.voters: tuple[str, ...] = ()
        self.value: list | None = None
        self.promised_by: set[str] = set()
        self.accepted_by: set[str] = set()
        self.best_accepted: tuple[Ballot, list] | None = None
        self.deadline_ms = 0

    @property
    def busy(self) -> bool:
        return self.phase != IDLE

    def _majority(self) -> int:
        return len(self.voters) // 2 + 1

    def propose(self, instance: int, value: list, voters: tuple[str, ...], now_ms: int) -> list[tuple[str, object]]:
        self.round_seen += 1
        self.phase = PREPARING
        self.instance = instance
        self.ballot = (self.round_seen, self.self_id)
        self.voters = voters
        self.value = value
        self.promised_by = set()
        self.accepted_by = set()
        self.best_accepted = None
        self.deadline_ms = now_ms + ROUND_TIMEOUT_MS
        prepare = messages.Prepare(self.self_id, instance, list(self.ballot))
        return [(voter, prepare) for voter in voters]

    def observe_round(self, ballot: Ballot | None) -> None:
        if ballot is not None and ballot[0] > self.round_seen:
            self.round_seen = ballot[0]

    def on_promise(self, message: messages.Promise) -> list[tuple[str, object]]:
        ballot = ballot_from_wire(message.ballot)
        if self.phase != PREPARING or message.instance != self.instance or ballot != self.ballot:
            return []
        if message.sender not in self.voters:
            return []
        if not message.ok:
            return []
        self.promised_by.add(message.sender)
        accepted = ballot_from_wire(message.accepted_ballot)
        if accepted is not None and isinstance(message.accepted_value, list):
            if self.best_accepted is None or accepted > self.best_accepted[0]:
                self.best_accepted = (accepted, message.accepted_value)
        if len(self.promised_by) < self._majority():
            return []
        if self.best_accepted is not None:
            self.value = self.best_accepted[1]
        self.phase = ACCEPTING
        accept = messages.Accept(self.self_id, self.instance, list(self.ballot), self.value)
        return [(voter, accept) for voter in self.voters]

    def on_accepted(self, message: messages.Accepted) -> list | None:
        """The chosen value once a majority accepted; None otherwise."""
        ballot = ballot_from_wire(message.ballot)
        if self.phase != ACCEPTING or message.instance != self.instance or ballot != self.ballot:
            return None
        if not message.ok or message.sender not in self.voters:
            return None
        self.accepted_by.add(message.sender)
        if len(self.accepted_by) < self._majority():
            return None
        self.phase = IDLE
        return self.value

    def expired(self, now_ms: int) -> bool:
        return self.phase != IDLE and now_ms >= self.deadline_ms

    def abandon(self) -> None:
        self.phase = IDLE

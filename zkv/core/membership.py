"""The member table: who is in the cluster, gossip merge, failure detection.

Each node keeps one entry per member it has heard of:

    node_id, address (peer ROUTER "host:port"), http_address, incarnation,
    state (alive | suspect | dead | left), heartbeat, epoch (its adopted map epoch),
    generation (identifies the node's Paxos acceptor state; changes when that is lost)

Theory of operation
-------------------
A node bumps its own heartbeat every tick and gossips its whole table to a few
peers. Merging an entry: the higher incarnation wins outright; at equal
incarnation the worse state wins (left > dead > suspect > alive) and heartbeat
and epoch take the maximum. Only a member raises its own incarnation: when it
hears itself suspected or declared dead it refutes by incarnating past the
rumour. A node starts with its incarnation at the wall-clock millisecond, so a
restarted process always outranks what the cluster remembers of the last one.

Failure detection is local: a member whose heartbeat has not advanced for
``suspect_after_ms`` is suspect, for ``dead_after_ms`` dead. The detector also
notices when the local node itself was not running (a long gap between ticks,
e.g. SIGSTOP) and then gives every member a fresh grace period instead of
declaring the whole cluster dead.

    alive --(silent suspect_after)--> suspect --(silent dead_after)--> dead
      ^                                  |                                |
      +------- refuted (incarnation+1) --+--------------------------------+
    any --(announces leave)--> left
"""

from __future__ import annotations

from dataclasses import dataclass

ALIVE = "alive"
SUSPECT = "suspect"
DEAD = "dead"
LEFT = "left"
STATE_RANK = {ALIVE: 0, SUSPECT: 1, DEAD: 2, LEFT: 3}

GOSSIP_INTERVAL_MS = 200
SUSPECT_AFTER_MS = 1500
DEAD_AFTER_MS = 5000
GOSSIP_FANOUT = 3
MEMBERS_MAX = 4096


@dataclass(slots=True)
class Member:
    node_id: str
    address: str
    http_address: str
    incarnation: int
    state: str
    heartbeat: int
    epoch: int
    generation: int

    def to_wire(self) -> list:
        return [self.node_id, self.address, self.http_address, self.incarnation, self.state,
                self.heartbeat, self.epoch, self.generation]


@dataclass(frozen=True, slots=True)
class MemberChange:
    """One line of the membership log: ``node_id`` went from ``before`` to ``after``."""

    node_id: str
    before: str | None
    after: str
    incarnation: int


def member_from_wire(entry: object) -> Member | None:
    """A Member from a gossip tuple, or None when the tuple is malformed."""
    if not isinstance(entry, list) or len(entry) != 8:
        return None
    node_id, address, http_address, incarnation, state, heartbeat, epoch, generation = entry
    if not (isinstance(node_id, str) and 0 < len(node_id) <= 256 and isinstance(address, str)
            and isinstance(http_address, str) and type(incarnation) is int and state in STATE_RANK
            and type(heartbeat) is int and type(epoch) is int and type(generation) is int):
        return None
    return Member(node_id, address, http_address, incarnation, state, heartbeat, epoch, generation)


class MemberTable:
    """Gossip state and failure detector for one node; fed times, never reads a clock."""

    def __init__(self, self_id: str, address: str, http_address: str, now_ms: int, generation: int,
                 suspect_after_ms: int = SUSPECT_AFTER_MS, dead_after_ms: int = DEAD_AFTER_MS) -> None:
        self.self_id = self_id
        self.suspect_after_ms = suspect_after_ms
        self.dead_after_ms = dead_after_ms
        self.members: dict[str, Member] = {
            self_id: Member(self_id, address, http_address, now_ms, ALIVE, 0, 0, generation)
        }
        # Local time at which each member last showed progress (heartbeat or incarnation).
        self.progress_ms: dict[str, int] = {self_id: now_ms}
        self.last_tick_ms = now_ms

    @property
    def me(self) -> Member:
        return self.members[self.self_id]

    def set_epoch(self, epoch: int) -> None:
        if epoch > self.me.epoch:
            self.me.epoch = epoch

    def leave(self) -> MemberChange | None:
        me = self.me
        if me.state == LEFT:
            return None
        before, me.state = me.state, LEFT
        return MemberChange(self.self_id, before, LEFT, me.incarnation)

    def tick(self, now_ms: int) -> list[MemberChange]:
        """Bump our heartbeat and run the failure detector."""
        changes: list[MemberChange] = []
        gap_ms = now_ms - self.last_tick_ms
        self.last_tick_ms = now_ms
        if gap_ms > self.suspect_after_ms:
            # We were not running (paused, starved): nobody else is to blame for the silence.
            for node_id in self.progress_ms:
                self.progress_ms[node_id] = now_ms
        self.me.heartbeat += 1
        self.progress_ms[self.self_id] = now_ms
        for node_id, member in self.members.items():
            if node_id == self.self_id or member.state in (DEAD, LEFT):
                continue
            silent_ms = now_ms - self.progress_ms.get(node_id, now_ms)
            if silent_ms >= self.dead_after_ms:
                changes.append(MemberChange(node_id, member.state, DEAD, member.incarnation))
                member.state = DEAD
            elif silent_ms >= self.suspect_after_ms and member.state == ALIVE:
                changes.append(MemberChange(node_id, member.state, SUSPECT, member.incarnation))
                member.state = SUSPECT
        return changes

    def merge(self, entries: list, now_ms: int) -> list[MemberChange]:
        """Merge a gossiped table; malformed entries are skipped (counted by the caller)."""
        changes: list[MemberChange] = []
        for entry in entries:
            incoming = member_from_wire(entry)
            if incoming is None:
                continue
            if incoming.node_id == self.self_id:
                self._hear_about_myself(incoming, changes)
                continue
            current = self.members.get(incoming.node_id)
            if current is None:
                if len(self.members) >= MEMBERS_MAX:
                    continue
                self.members[incoming.node_id] = incoming
                # A member first heard of gets a full grace period, unless the news is its death.
                heard = incoming.state != DEAD
                self.progress_ms[incoming.node_id] = now_ms if heard else now_ms - self.dead_after_ms
                changes.append(MemberChange(incoming.node_id, None, incoming.state, incoming.incarnation))
            elif incoming.incarnation > current.incarnation:
                before = current.state
                self.members[incoming.node_id] = incoming
                self.progress_ms[incoming.node_id] = now_ms
                if before != incoming.state:
                    changes.append(MemberChange(incoming.node_id, before, incoming.state, incoming.incarnation))
            elif incoming.incarnation == current.incarnation:
                if incoming.heartbeat > current.heartbeat:
                    current.heartbeat = incoming.heartbeat
                    self.progress_ms[incoming.node_id] = now_ms
                if incoming.epoch > current.epoch:
                    current.epoch = incoming.epoch
                if STATE_RANK[incoming.state] > STATE_RANK[current.state]:
                    changes.append(MemberChange(incoming.node_id, current.state, incoming.state, current.incarnation))
                    current.state = incoming.state
        return changes

    def _hear_about_myself(self, rumour: Member, changes: list[MemberChange]) -> None:
        me = self.me
        if me.state == LEFT:
            return
        if rumour.incarnation >= me.incarnation and rumour.state != ALIVE:
            before = rumour.state
            me.incarnation = rumour.incarnation + 1
            changes.append(MemberChange(self.self_id, before, ALIVE, me.incarnation))

    def add_placeholder(self, node_id: str, address: str, http_address: str, generation: int, now_ms: int) -> None:
        """Remember a member known only from a saved config (incarnation 0: any news outranks it)."""
        if node_id not in self.members and len(self.members) < MEMBERS_MAX:
            self.members[node_id] = Member(node_id, address, http_address, 0, ALIVE, 0, 0, generation)
            self.progress_ms[node_id] = now_ms

    def snapshot(self) -> list[list]:
        return [member.to_wire() for member in self.members.values()]

    def get(self, node_id: str) -> Member | None:
        return self.members.get(node_id)

    def is_responsive(self, node_id: str, now_ms: int) -> bool:
        """Heard from within dead_after, whatever its state (a leaving node is responsive)."""
        if node_id == self.self_id:
            return True
        member = self.members.get(node_id)
        if member is None or member.state == DEAD:
            return False
        return now_ms - self.progress_ms.get(node_id, -self.dead_after_ms) < self.dead_after_ms

    def _recently_heard(self) -> set[str]:
        """Members whose heartbeat advanced within dead_after (a leaving node still working)."""
        return {node_id for node_id in self.progress_ms if self._heard_within_dead_after(node_id, self.last_tick_ms)}

    def ring_candidates(self, now_ms: int) -> list[str]:
        """Members that should own partitions: up and not leaving.

        A member rumoured dead whose heartbeat we still see advancing stays: a dead rumour
        from a node that was cut off must not move partitions away from a live member
        (it will refute the rumour in a moment).
        """
        return sorted(node_id for node_id, member in self.members.items()
                      if member.state in (ALIVE, SUSPECT)
                      or (member.state == DEAD and self._heard_within_dead_after(node_id, now_ms)))

    def _heard_within_dead_after(self, node_id: str, now_ms: int) -> bool:
        return now_ms - self.progress_ms.get(node_id, -self.dead_after_ms) < self.dead_after_ms

    def gossip_targets(self, rng, fanout: int = GOSSIP_FANOUT) -> list[str]:
        """A few random peers; one slot sometimes goes to a dead member so healed partitions reconnect."""
        up = [node_id for node_id, member in self.members.items()
              if node_id != self.self_id and (member.state in (ALIVE, SUSPECT)
                                              or (member.state == LEFT and node_id in self._recently_heard()))]
        down = [node_id for node_id, member in self.members.items()
                if node_id != self.self_id and member.state == DEAD]
        chosen = rng.sample(up, min(fanout, len(up)))
        if down and rng.random() < 0.5:
            chosen.append(down[rng.randrange(len(down))])
        return chosen

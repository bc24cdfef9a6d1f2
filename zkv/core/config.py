"""The partition map: who reads and who writes each partition at an epoch.

A ``Config`` is immutable and numbered by its epoch. Configs are decided one
after another by Paxos (``zkv.core.paxos``), so every node that adopts epoch e
adopts the same map. Each partition has a ``PartitionPlan``:

    old      the replica set the data lives on (the read set while moving)
    new      the target owners: the top RF of the ring by rendezvous hashing
    phase    SETTLED, MOVING or SWITCHED
    joined   the *pullers* of the move, each with the epoch it was assigned at:
             every member of new - old, and also the members of new & old when
             the set shrinks so far that their own copies would not add up to
             W copies of every acknowledged write in the new set
    complete the pullers that have finished pulling
    changed_at  the epoch this plan last changed

Theory of operation
-------------------
A move goes through three epochs, each proposed by the claimant:

    SETTLED(old)          reads: old   writes: W of old
      | ring changes, target != old
      v
    MOVING(old -> new)    reads: old   writes: W of old AND W of new
      | every member of new - old reported its pull complete
      v
    SWITCHED(old -> new)  reads: new   writes: W of old AND W of new
      | every responsive holder has adopted the SWITCHED epoch, and so many
      | of old that the others cannot form a read quorum at an older epoch
      v
    SETTLED(new)          reads: new   writes: W of new

Writes during a move need a quorum in both sets (joint consensus, stronger than
"W plus one per pending owner"), so whichever way the move ends, W of the final
owners hold every acknowledged write. Reads switch only once the new owners
have pulled the data, and the old owners leave the write set only after every
holder has seen the switch, so a coordinator one epoch behind still meets a
quorum that holds the write. Replicas reject requests older than the plan's
``changed_at`` (``STATUS_STALE``), which bounds how far behind that can be.

A pending owner pulls only from old-set members that have adopted the epoch
that added it: from then on they refuse writes that do not also reach it
(start receiving updates, then take the snapshot: the ZeroMQ guide's Clone rule).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from zkv.core.placement import rank_owners

SETTLED = 0
MOVING = 1
SWITCHED = 2
PHASE_NAMES = {SETTLED: "settled", MOVING: "moving", SWITCHED: "switched"}


def quorum_of(replication: int) -> int:
    return replication // 2 + 1


def needed(quorum: int, members: int) -> int:
    """Acknowledgements needed from a set of ``members`` (a quorum larger than the set means all)."""
    return quorum if quorum < members else members


def pull_sources_needed(set_size: int, quorum: int) -> int:
    """How many members of a set a copy must merge so it holds every write acknowledged by ``quorum`` of them."""
    if set_size == 0:
        return 0
    return set_size - needed(quorum, set_size) + 1


@dataclass(frozen=True, slots=True)
class PartitionPlan:
    old: tuple[str, ...]
    new: tuple[str, ...]
    phase: int
    complete: tuple[str, ...]
    joined: tuple[tuple[str, int], ...]
    changed_at: int

    @property
    def read_set(self) -> tuple[str, ...]:
        return self.old if self.phase == MOVING else self.new

    @property
    def write_sets(self) -> tuple[tuple[str, ...], ...]:
        return (self.new,) if self.phase == SETTLED else (self.old, self.new)

    @property
    def write_targets(self) -> tuple[str, ...]:
        if self.phase == SETTLED:
            return self.new
        return self.old + tuple(node for node in self.new if node not in self.old)

    @property
    def pending(self) -> tuple[str, ...]:
        """Target owners still pulling that serve no reads (new members; staying ones still read)."""
        if self.phase != MOVING:
            return ()
        return tuple(node for node in self.new if node not in self.old and node not in self.complete)

    @property
    def awaiting(self) -> tuple[str, ...]:
        """Pullers that have not reported a complete copy yet."""
        if self.phase != MOVING:
            return ()
        return tuple(node for node, _ in self.joined if node not in self.complete)

    def joined_at(self, node_id: str) -> int | None:
        for node, epoch in self.joined:
            if node == node_id:
                return epoch
        return None

    def holders(self) -> tuple[str, ...]:
        return self.write_targets

    def to_wire(self) -> list:
        return [list(self.old), list(self.new), self.phase, list(self.complete),
                [[node, epoch] for node, epoch in self.joined], self.changed_at]

    @classmethod
    def from_wire(cls, raw: list) -> PartitionPlan:
        """Raises ValueError (or TypeError, turned into ValueError by Config.from_wire) when malformed."""
        old, new, phase, complete, joined, changed_at = raw
        plan = cls(_node_ids(old), _node_ids(new), phase, _node_ids(complete),
                   tuple((_node_id(node), _epoch(epoch)) for node, epoch in joined), _epoch(changed_at))
        if type(phase) is not int or phase not in PHASE_NAMES:
            raise ValueError(f"phase {phase!r} is not one of {sorted(PHASE_NAMES)}")
        return plan


def _node_id(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"node id {value!r} is not a non-empty string")
    return value


def _node_ids(values: object) -> tuple[str, ...]:
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"{values!r} is not a list of node ids")
    return tuple(_node_id(value) for value in values)


def _epoch(value: object) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"epoch {value!r} is not a non-negative integer")
    return value


def settled(owners: tuple[str, ...], epoch: int) -> PartitionPlan:
    return PartitionPlan(owners, owners, SETTLED, (), (), epoch)


@dataclass(frozen=True, slots=True)
class NodeAddress:
    node_id: str
    address: str
    http_address: str


@dataclass(frozen=True, slots=True)
class Config:
    epoch: int
    partitions: int
    replication: int
    ring: tuple[str, ...]  # the voters for the next epoch and the owner ranking
    generations: tuple[int, ...]  # generations[i]: the acceptor generation of ring[i] allowed to vote
    nodes: tuple[NodeAddress, ...]  # every node in the ring or in any plan
    plans: tuple[PartitionPlan, ...]

    @property
    def quorum(self) -> int:
        return quorum_of(self.replication)

    def voter_generation(self, node_id: str) -> int | None:
        for node, generation in zip(self.ring, self.generations):
            if node == node_id:
                return generation
        return None

    def address_of(self, node_id: str) -> NodeAddress | None:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        return None

    def holders(self) -> set[str]:
        found: set[str] = set()
        for plan in self.plans:
            found.update(plan.write_targets)
        return found

    def to_wire(self) -> list:
        return [self.epoch, self.partitions, self.replication, list(self.ring), list(self.generations),
                [[node.node_id, node.address, node.http_address] for node in self.nodes],
                [plan.to_wire() for plan in self.plans]]

    @classmethod
    def from_wire(cls, raw: object) -> Config:
        """Parse a config from the wire; raises ValueError when it is malformed."""
        try:
            epoch, partitions, replication, ring, generations, nodes, plans = raw  # type: ignore[misc]
            for name, value in (("partitions", partitions), ("replication", replication)):
                if type(value) is not int or value < 1:
                    raise ValueError(f"{name} {value!r} is not a positive integer")
            if any(type(g) is not int for g in generations):
                raise ValueError("generations must be integers")
            if any(not all(isinstance(part, str) for part in node) for node in nodes):
                raise ValueError("node addresses must be strings")
            config = cls(_epoch(epoch), partitions, replication, _node_ids(ring), tuple(generations),
                         tuple(NodeAddress(_node_id(a), b, c) for a, b, c in nodes),
                         tuple(PartitionPlan.from_wire(plan) for plan in plans))
        except (TypeError, ValueError) as error:
            raise ValueError(f"malformed config: {error}") from None
        if len(config.plans) != config.partitions or config.partitions <= 0:
            raise ValueError("malformed config: plan count does not match partitions")
        if len(config.generations) != len(config.ring):
            raise ValueError("malformed config: ring and generations differ in length")
        return config


def initial_config(node: NodeAddress, generation: int, partitions: int, replication: int) -> Config:
    """Epoch 1 of a new cluster: one node owns everything."""
    owners = (node.node_id,)
    return Config(1, partitions, replication, owners, (generation,), (node,),
                  tuple(settled(owners, 1) for _ in range(partitions)))


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """What the claimant knows when it plans the next epoch.

    ``ring``: members that should own partitions (up and not leaving), sorted.
    ``generations``: node -> its current acceptor generation (from gossip).
    ``addresses``: addresses for every node that may appear in the next config.
    ``completions``: (node, partition, joined_epoch) copies reported complete.
    ``adopted``: node -> the epoch it reports having adopted (from gossip).
    ``responsive``: nodes heard from recently, whatever their state.
    """

    ring: tuple[str, ...]
    generations: dict[str, int]
    addresses: dict[str, NodeAddress]
    completions: frozenset[tuple[str, int, int]]
    adopted: dict[str, int]
    responsive: frozenset[str]


def plan_next(config: Config, inputs: PlanInputs) -> Config | None:
    """The next config the claimant should propose, or None when nothing should change."""
    epoch = config.epoch + 1
    ring = inputs.ring if inputs.ring else config.ring
    current_generations = dict(zip(config.ring, config.generations))
    generations = tuple(inputs.generations.get(node, current_generations.get(node, 0)) for node in ring)
    plans = []
    changed = ring != config.ring or generations != config.generations
    for partition, plan in enumerate(config.plans):
        target = rank_owners(partition, ring, config.replication)
        next_plan = _step(partition, plan, target, epoch, config.quorum, inputs)
        changed = changed or next_plan is not plan
        plans.append(next_plan)
    if not changed:
        return None
    mentioned = set(ring)
    for plan in plans:
        mentioned.update(plan.write_targets)
    known = {node.node_id: node for node in config.nodes}
    known.update(inputs.addresses)
    nodes = tuple(known[node_id] for node_id in sorted(mentioned) if node_id in known)
    return Config(epoch, config.partitions, config.replication, ring, generations, nodes, tuple(plans))


def _step(partition: int, plan: PartitionPlan, target: tuple[str, ...], epoch: int,
          quorum: int, inputs: PlanInputs) -> PartitionPlan:
    if plan.phase == SETTLED:
        if set(target) == set(plan.new):
            return plan if target == plan.new else replace(plan, old=target, new=target)
        return _begin_move(plan.new, target, (), (), epoch, quorum)
    if plan.phase == MOVING:
        if set(target) == set(plan.old):
            return settled(plan.old, epoch)  # the move is abandoned; nobody switched reads yet
        if set(target) != set(plan.new):
            return _begin_move(plan.old, target, plan.complete, plan.joined, epoch, quorum)
        newly_complete = tuple(
            node for node in plan.awaiting
            if (node, partition, plan.joined_at(node)) in inputs.completions
        )
        if not newly_complete:
            return plan
        complete = plan.complete + newly_complete
        if all(node in complete for node, _ in plan.joined):
            return PartitionPlan(plan.old, plan.new, SWITCHED, (), (), epoch)
        return replace(plan, complete=complete, changed_at=epoch)
    # SWITCHED: settle once every responsive holder has adopted the switch, and enough of the
    # old set has that the rest can never form a read quorum of it. Without the second rule, a
    # network partition that cuts off a quorum of the old replicas together with a client lets
    # that client keep reading the old set at an old epoch while the other side writes only to
    # the new set.
    holders = set(plan.old) | set(plan.new)
    if not all(inputs.adopted.get(node, 0) >= plan.changed_at
               for node in holders if node in inputs.responsive):
        return plan
    switched_old = sum(1 for node in plan.old if inputs.adopted.get(node, 0) >= plan.changed_at)
    if switched_old < len(plan.old) - needed(quorum, len(plan.old)) + 1:
        return plan
    return settled(plan.new, epoch)


def pullers_for(old: tuple[str, ...], new: tuple[str, ...], quorum: int) -> tuple[str, ...]:
    """Who must pull for a move from ``old`` to ``new`` so that, at the switch, W members of
    ``new`` hold every write that W members of ``old`` acknowledged.

    Members of new - old pull from enough of old to see every such write. Staying members
    hold only what they acknowledged; when the set shrinks (old - new is larger than what the
    joiners make up for) they must pull too.
    """
    joining = tuple(node for node in new if node not in old)
    leaving = sum(1 for node in old if node not in new)
    guaranteed = len(joining) + needed(quorum, len(old)) - leaving
    if guaranteed >= needed(quorum, len(new)):
        return joining
    return joining + tuple(node for node in new if node in old)


def _begin_move(old: tuple[str, ...], target: tuple[str, ...], complete: tuple[str, ...],
                joined: tuple[tuple[str, int], ...], epoch: int, quorum: int) -> PartitionPlan:
    pullers = pullers_for(old, target, quorum)
    kept = {node: since for node, since in joined if node in pullers}
    joined = tuple((node, kept.get(node, epoch)) for node in pullers)
    complete = tuple(node for node in complete if node in kept)
    if all(node in complete for node in pullers):
        # Nothing (more) to pull: the set only shrank by what it can afford, or every puller
        # already holds a complete copy from earlier in this move. Reads may switch at once.
        return PartitionPlan(old, target, SWITCHED, (), (), epoch)
    return PartitionPlan(old, target, MOVING, complete, joined, epoch)

"""Handoff: pulling a partition copy from the nodes that hold it.

A node pulls partition p in two situations, both decided from the config it
has adopted and its own ``complete`` flags:

- *move*: it is a pending owner (in ``new - old`` of a MOVING plan). Sources
  are the ``old`` members; it must finish with enough of them that every write
  acknowledged by a quorum of ``old`` reached one of them
  (``pull_sources_needed``). Each source serves only once it has adopted the
  epoch that added the puller (``since``), so later writes reach the puller too.
- *recovery*: it is in the read set but lost its copy (a memory node that
  restarted). Sources are the other members of the read set, same arithmetic.

Theory of operation
-------------------
A ``PullTask`` streams each source's copy in bounded chunks, one request in
flight per source (the reply is the flow control), and merges every chunk by
version into local storage while the node also takes new writes. A source
that refuses (BEHIND, NOT_READY) or times out is retried with backoff. The task
completes once it has the needed number of sources and every other source is
finished, unreachable or refusing. Then the node marks p complete and, for a
move, reports it to the claimant.

    for each source:  idle --request--> waiting --chunk--> idle ... --last chunk--> done
                                          \\--refused/timeout--> backoff --> idle
"""

from __future__ import annotations

from dataclasses import dataclass, field

PULL_ITEMS_MAX = 2000
PULL_BYTES_MAX = 1 << 20
PULL_TIMEOUT_MS = 5000
PULL_BACKOFF_MS = 500
PULL_TASKS_MAX = 16  # partitions pulled at once by one node
SOURCE_FAILURES_TOLERATED = 2  # a source failing this often stops blocking completion

MOVE = "move"
RECOVERY = "recovery"

_IDLE, _WAITING, _BACKOFF, _DONE = range(4)


@dataclass(slots=True)
class SourceState:
    phase: int = _IDLE
    cursor: bytes | None = None
    request_id: int = 0
    deadline_ms: int = 0
    failures: int = 0


@dataclass(slots=True)
class PullTask:
    partition: int
    kind: str
    since: int
    sources: tuple[str, ...]
    need: int
    states: dict[str, SourceState] = field(default_factory=dict)
    items: int = 0
    bytes: int = 0

    def __post_init__(self) -> None:
        for source in self.sources:
            self.states[source] = SourceState()

    def matches(self, kind: str, since: int, sources: tuple[str, ...], need: int) -> bool:
        return self.kind == kind and self.since == since and self.sources == sources and self.need == need

    def done_count(self) -> int:
        return sum(1 for state in self.states.values() if state.phase == _DONE)

    def requests(self, now_ms: int, responsive) -> list[tuple[str, SourceState]]:
        """Sources to ask for their next chunk now."""
        due = []
        for source, state in self.states.items():
            if state.phase == _WAITING and now_ms >= state.deadline_ms:
                state.phase = _BACKOFF
                state.failures += 1
                state.deadline_ms = now_ms + PULL_BACKOFF_MS
            if state.phase == _BACKOFF and now_ms >= state.deadline_ms:
                state.phase = _IDLE
            if state.phase == _IDLE and responsive(source):
                due.append((source, state))
        return due

    def on_chunk(self, source: str, request_id: int, last: bool, cursor: bytes | None,
                 items: int, size_bytes: int) -> bool:
        """Record a chunk from a source; False when it answers a request we no longer wait for."""
        state = self.states.get(source)
        if state is None or state.phase != _WAITING or state.request_id != request_id:
            return False
        self.items += items
        self.bytes += size_bytes
        state.failures = 0
        if last:
            state.phase = _DONE
        else:
            state.phase = _IDLE
            state.cursor = cursor
        return True

    def on_refused(self, source: str, request_id: int, now_ms: int) -> None:
        state = self.states.get(source)
        if state is None or state.phase != _WAITING or state.request_id != request_id:
            return
        state.phase = _BACKOFF
        state.failures += 1
        state.deadline_ms = now_ms + PULL_BACKOFF_MS

    def complete(self, responsive) -> bool:
        if self.done_count() < self.need:
            return False
        return all(
            state.phase == _DONE or not responsive(source) or state.failures >= SOURCE_FAILURES_TOLERATED
            for source, state in self.states.items()
        )

    def progress(self) -> dict:
        return {"partition": self.partition, "kind": self.kind, "since": self.since,
                "sources_done": self.done_count(), "sources_needed": self.need,
                "items": self.items, "bytes": self.bytes}


def mark_waiting(state: SourceState, request_id: int, now_ms: int) -> None:
    state.phase = _WAITING
    state.request_id = request_id
    state.deadline_ms = now_ms + PULL_TIMEOUT_MS

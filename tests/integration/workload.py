"""A bounded background writer that records what the cluster acknowledged."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from zkv import ZkvError


@dataclass
class WriteLog:
    acknowledged: dict[str, str] = field(default_factory=dict)
    failures: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, error)
    attempts: int = 0

    def failures_after(self, moment: float) -> list[tuple[float, str]]:
        return [failure for failure in self.failures if failure[0] >= moment]


class Writer:
    """Writes keys prefix-0, prefix-1, ... until stopped, at most ``count`` keys or ``seconds``."""

    def __init__(self, client, prefix: str, count: int = 20_000, seconds: float = 60.0,
                 in_flight: int = 8, value_bytes: int = 100) -> None:
        self.client = client
        self.prefix = prefix
        self.count = count
        self.seconds = seconds
        self.in_flight = in_flight
        self.value_bytes = value_bytes
        self.log = WriteLog()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"writer-{prefix}", daemon=True)

    def value_for(self, index: int) -> str:
        return f"{self.prefix}-{index}:".ljust(self.value_bytes, "v")

    def start(self) -> Writer:
        self._thread.start()
        return self

    def stop(self) -> WriteLog:
        self._stop.set()
        self._thread.join(self.seconds + 30)
        return self.log

    def wait_for(self, acknowledged: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.log.acknowledged) < acknowledged:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise AssertionError(f"writer reached only {len(self.log.acknowledged)} of {acknowledged} keys")
            self._stop.wait(0.02)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        index = 0
        pending = []
        while (not self._stop.is_set() and index < self.count and time.monotonic() < deadline) or pending:
            while len(pending) < self.in_flight and index < self.count and not self._stop.is_set() \
                    and time.monotonic() < deadline:
                key = f"{self.prefix}-{index}"
                value = self.value_for(index)
                pending.append((key, value, self.client.set_async(key, value)))
                self.log.attempts += 1
                index += 1
            key, value, future = pending.pop(0)
            try:
                future.result(30)
                self.log.acknowledged[key] = value
            except ZkvError as error:
                self.log.failures.append((time.monotonic(), f"{key}: {error!r}"))


def unreadable(client, expected: dict[str, str], r: int = 2) -> dict[str, object]:
    """Keys whose quorum read does not return exactly the acknowledged value."""
    keys = list(expected)
    wrong: dict[str, object] = {}
    for start in range(0, len(keys), 2000):
        chunk = keys[start:start + 2000]
        values = client.mget(chunk, r=r, timeout=20)
        for key, value in zip(chunk, values):
            if value != expected[key]:
                wrong[key] = value
    return wrong

"""``zkv demo`` end to end: the story, the verdict from data, and no process left behind (also on Ctrl-C)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT_S = 120.0
INTERRUPT_EXIT_TIMEOUT_S = 30.0
LINE_TIMEOUT_S = 60.0
NODE_LINE = re.compile(r"^\s+(node-\d+)\s+pid (\d+)\s")
VERDICT = re.compile(r"^verdict: (\d+) lost of (\d+) acknowledged keys$", re.MULTILINE)
CLIENT = re.compile(r"^client: (\d+) ops in [\d.]+s = \d+ ops/s, (\d+) failed$", re.MULTILINE)
TABLE_HEADER = re.compile(r"^\s+NODE\s+PID\s+STATE\s+PRIMARY\s+REPLICA\s+TOTAL\s+KEYS$", re.MULTILINE)
LOG_FOLDER = re.compile(r"^logs and data: (\S+)", re.MULTILINE)


def demo_command(*options: str) -> list[str]:
    return [sys.executable, "-m", "zkv", "demo", "--keys", "1000", *options]


def node_pids(output: str) -> dict[str, int]:
    return {match.group(1): int(match.group(2))
            for match in map(NODE_LINE.match, output.splitlines()) if match}


def is_zkv_node(pid: int) -> bool:
    """True while ``pid`` is a live (not zombie) ``zkv node`` process; a reused PID is not ours."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rpartition(")")[2].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            arguments = cmdline.read().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z" and b"zkv" in arguments and b"node" in arguments


def still_running(pids: dict[str, int]) -> dict[str, int]:
    return {node_id: pid for node_id, pid in pids.items() if is_zkv_node(pid)}


def kill_leftovers(pids: dict[str, int]) -> None:
    """Only when a test already failed: do not leave its nodes behind for the next test."""
    for pid in still_running(pids).values():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it ended by itself in the meantime


class DemoProcess:
    """``zkv demo`` as a subprocess whose stdout is read line by line on a thread."""

    def __init__(self, *options: str) -> None:
        environment = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(demo_command(*options), cwd=REPO, env=environment, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.lines: queue.Queue = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for_line(self, pattern: str, timeout_s: float = LINE_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r} within {timeout_s:g}s:\n{self.text()}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"the demo ended before printing {pattern!r}:\n{self.text()}")
            self.output.append(line)
            if re.search(pattern, line):
                return line

    def wait_exit(self, timeout_s: float) -> int:
        code = self.process.wait(timeout_s)
        self._reader.join(5)
        return code

    def text(self) -> str:
        """Everything printed so far (the lines read but not yet looked at included)."""
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.output.append(line)
        return "".join(self.output)

    def stop(self) -> None:
        """Interrupt a demo still running (it stops its nodes and removes its folder), kill it if that hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(INTERRUPT_EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def test_demo_tells_the_story_and_loses_nothing():
    started = time.monotonic()
    demo = DemoProcess()
    try:
        code = demo.wait_exit(DEMO_TIMEOUT_S)
        elapsed_s = time.monotonic() - started
        output = demo.text()
        pids = node_pids(output)
        assert code == 0, f"exit {code}\n{output}"
        verdict = VERDICT.search(output)
        assert verdict, output
        assert int(verdict.group(1)) == 0 and int(verdict.group(2)) > 0, verdict.group(0)
        client = CLIENT.search(output)
        assert client and int(client.group(1)) > 0, output
        assert len(TABLE_HEADER.findall(output)) == 3, output
        assert re.search(r"killed node-3 \(pid \d+", output), output
        assert "node-6 added" in output, output
        assert set(pids) == {f"node-{index}" for index in range(1, 7)}, output
        assert still_running(pids) == {}, f"left running: {still_running(pids)}"
        folder = LOG_FOLDER.search(output)
        assert folder and not Path(folder.group(1)).exists(), "the temp folder was not removed"
        assert elapsed_s < DEMO_TIMEOUT_S
    finally:
        demo.stop()
        kill_leftovers(node_pids(demo.text()))


@pytest.mark.parametrize("signum, after", [
    (signal.SIGINT, r"nodes started"),          # Ctrl-C while the cluster is idle
    (signal.SIGTERM, r"killed node-3"),        # while the client runs and the survivors converge
], ids=["sigint-after-start", "sigterm-during-failover"])
def test_interrupted_demo_stops_every_node(signum, after):
    demo = DemoProcess("--memory")
    try:
        demo.wait_for_line(after)
        pids = node_pids(demo.text())
        assert len(pids) >= 5, demo.text()
        alive = {node_id: pid for node_id, pid in pids.items() if node_id != "node-3"}  # node-3 may be killed
        assert still_running(alive) == alive, "the nodes should be running before the interrupt"
        demo.process.send_signal(signum)
        code = demo.wait_exit(INTERRUPT_EXIT_TIMEOUT_S)
        output = demo.text()
        pids = node_pids(output)
        assert code == 128 + signum, f"exit {code}\n{output}"
        assert "interrupted" in output, output
        assert still_running(pids) == {}, f"left running: {still_running(pids)}\n{output}"
        folder = LOG_FOLDER.search(output)
        assert folder and not Path(folder.group(1)).exists(), "the temp folder was not removed"
    finally:
        demo.stop()
        kill_leftovers(node_pids(demo.text()))

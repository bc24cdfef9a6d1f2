"""``zkv shell`` against a real 3-node cluster: on a pseudo-terminal (pexpect) and piped.

The interactive tests drive prompt_toolkit through a real pty: they wait on the
prompt and on output with pexpect timeouts, never with sleeps. prompt_toolkit
redraws the prompt and the typed line when a line is accepted, then turns
bracketed paste off (ESC[?2004l) before the command runs: a command's output is
what comes between that marker and the next prompt.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pexpect

from zkv.localcluster import free_port

EXPECT_TIMEOUT_S = 20
UP_ARROW = "\x1b[A"
TAB = "\t"
LINE_ACCEPTED = "\x1b[?2004l"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def shell_command(cluster, *args) -> list[str]:
    nodes = ",".join(node.address for node in cluster.running_nodes())
    return ["-m", "zkv", "shell", "--nodes", nodes, *args]


class Terminal:
    """One ``zkv shell`` on a pty, with the prompt it prints."""

    def __init__(self, cluster, history_file) -> None:
        # PROMPT_TOOLKIT_NO_CPR: a pty has no terminal to answer cursor-position requests.
        env = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
        self.prompt = f"zkv({cluster.running_nodes()[0].address})>"
        self.child = pexpect.spawn(sys.executable, shell_command(cluster, "--history-file", str(history_file)),
                                   env=env, encoding="utf-8", timeout=EXPECT_TIMEOUT_S, dimensions=(50, 200))
        self.wait_prompt()

    def wait_prompt(self) -> str:
        """Wait for the next prompt; return the output printed since the last match, escapes removed."""
        self.child.expect_exact(self.prompt)
        return ANSI_ESCAPE.sub("", self.child.before)

    def run(self, line: str, *expected: str) -> str:
        """Type a command, wait for each expected text in order, then for the next prompt."""
        self.child.sendline(line)
        self.child.expect_exact(LINE_ACCEPTED)
        for text in expected:
            self.child.expect_exact(text)
        return self.wait_prompt()

    def exit_status(self) -> int:
        self.child.expect(pexpect.EOF)
        self.child.close()
        return self.child.exitstatus

    def close(self) -> None:
        if self.child.isalive():
            self.child.close(force=True)


def test_interactive_session_completion_errors_and_history(cluster3, tmp_path):
    history_file = tmp_path / "history"
    first = Terminal(cluster3, history_file)
    try:
        first.run("set greeting 'hello shell world'", "OK")
        first.run("get greeting", "hello shell world")
        first.run("del greeting", "OK")
        first.run("get greeting", "(nil)")

        # Tab completion: "clu" + TAB becomes "cluster", which then runs.
        first.child.send("clu")
        first.child.expect_exact("clu")
        first.child.send(TAB)
        first.child.expect_exact("ster")  # the completed rest of the word (the terminal redraws only the change)
        first.child.send("\r")
        first.child.expect_exact(LINE_ACCEPTED)
        table = first.wait_prompt()
        assert "claimant" in table and table.count(" alive ") == 3

        # Errors mid-session: one line each, then the next command still works.
        for line, error in [("get", "error: usage: get KEY"),
                            ("frobnicate x", "error: unknown command 'frobnicate' (type help for the list)"),
                            ("set k", "error: usage: set KEY VALUE"),
                            ("use w=abc", "error: w must be an integer between 1 and 15, not 'abc'")]:
            rest = first.run(line, error)
            assert rest.strip() == "", f"more output after the error line of {line!r}: {rest!r}"
            first.run("get nothing-here", "(nil)")

        first.run("use w=3", "w=3 r=default")
        first.run("use", "w=3 r=default")
        first.run("set sticky 'written at w3'", "OK")
        first.run("mset k:1 one k:2 two k:3 three", "OK")
        first.run("mget k:1 missing-key k:3", "one", "(nil)", "three")
        listed = first.run("keys k:")
        assert [line.strip() for line in listed.splitlines() if line.strip().startswith("k:")] == ["k:1", "k:2", "k:3"]
        assert "... (more)" in first.run("keys k: 2")
        everything = first.run("keys")
        assert "sticky" in everything and "greeting" not in everything
        first.run("help use", "use [w=N] [r=N]")
        first.run("set histkey 1", "OK")
        first.child.sendeof()  # Ctrl-D leaves like exit
        assert first.exit_status() == 0
    finally:
        first.close()

    history = history_file.read_text()
    assert "+set histkey 1\n" in history and "+use w=3\n" in history
    assert "+cluster\n" in history  # what tab completion turned "clu" into

    second = Terminal(cluster3, history_file)
    try:
        second.child.send(UP_ARROW)
        second.child.expect_exact("set histkey 1")
        second.child.send("\r")
        second.child.expect_exact(LINE_ACCEPTED)
        second.child.expect_exact("OK")
        second.wait_prompt()
        second.run("get sticky", "written at w3")
        second.child.sendline("exit")
        assert second.exit_status() == 0
    finally:
        second.close()
    # The recalled line ran (OK above); the history keeps growing across sessions.
    assert "+get sticky\n" in history_file.read_text() and "+get sticky\n" not in history


def run_piped(cluster, script: bytes, *args):
    return subprocess.run([sys.executable, *shell_command(cluster, *args)], input=script,
                          capture_output=True, timeout=60)


def test_piped_mode_outputs_results_and_exit_code_of_last_command(cluster3, tmp_path):
    result = run_piped(cluster3, b"set a 1\nget a\nget missing\n")
    assert result.stdout.decode().splitlines() == ["OK", "1", "(nil)"]
    assert result.returncode == 1 and result.stderr == b""

    script = tmp_path / "script.zkv"
    script.write_text("# a comment, then a blank line\n\n"
                      "set 'key with spaces' \"value with spaces\"\n"
                      "get nope\n"
                      "bogus command\n"
                      "mset x 1 y 2\n"
                      "mget x y\n"
                      "get 'key with spaces'\n")
    with open(script, "rb") as stdin:
        result = subprocess.run([sys.executable, *shell_command(cluster3)], stdin=stdin,
                                capture_output=True, timeout=60)
    assert result.stdout.decode().splitlines() == ["OK", "(nil)", "OK", "1", "2", "value with spaces"]
    assert result.stderr.decode().splitlines() == ["error: unknown command 'bogus' (type help for the list)"]
    assert result.returncode == 0

    assert run_piped(cluster3, b"get a\nset k\n").returncode == 2
    assert run_piped(cluster3, b"get a\nset x 1 --w\n").returncode == 2  # too many arguments
    # 9 replicas cannot acknowledge in a cluster keeping 3: refused at once as an invalid request.
    quorum = run_piped(cluster3, b"use w=9\nset a 2\n", "--timeout", "1")
    assert quorum.returncode == 2 and "can never be met" in quorum.stderr.decode()
    assert len(quorum.stderr.decode().splitlines()) == 1
    # A bare exit ends the script with the status of the command before it, like a POSIX shell.
    assert run_piped(cluster3, b"get missing\nexit\nset never 1\n").returncode == 1
    assert run_piped(cluster3, b"get never\n").stdout == b"(nil)\n"


def test_unreachable_cluster_exits_3():
    result = subprocess.run([sys.executable, "-m", "zkv", "shell", "--nodes", f"127.0.0.1:{free_port()}",
                             "--timeout", "0.5"], input=b"get a\n", capture_output=True, timeout=30)
    assert result.returncode == 3
    assert result.stderr.decode().startswith("error: cannot connect: no zkv node answered")

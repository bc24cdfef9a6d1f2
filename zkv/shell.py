"""``zkv shell``: an interactive shell on a cluster, and a line-by-line script runner.

This module owns the shell's command language and its two front ends:

- ``Session`` turns one line into one command on a ``zkv.Client`` and returns its
  exit code (0 ok, 1 key not found, 2 bad usage or invalid request, 3 the cluster
  could not do it). It never raises for a bad line: every failure is one
  ``error: ...`` line on stderr, and the session goes on.
- On a terminal, a prompt_toolkit prompt with history kept in a file across
  sessions and tab completion of command names. Otherwise (stdin piped), one
  command per line, no prompt, blank lines and ``#`` comments skipped, and the
  process exits with the code of the last command (like ``zkv client``).

Arguments are split like a POSIX shell (shlex), so ``set k "a value"`` works.
Bytes values and keys that are not UTF-8 are shown as Python bytes literals.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from typing import Callable

import click

EXIT_OK = 0
EXIT_NOT_FOUND = 1  # the values of zkv.cli's exit codes (not imported: zkv.cli imports this module)
EXIT_INVALID = 2
EXIT_CLUSTER = 3

QUORUM_MAX = 15  # the same bound as ``zkv client set --w``
KEYS_LIMIT_DEFAULT = 100
NIL = "(nil)"


class ShellError(Exception):
    """A command that failed; the message is the one line the user sees."""

    code = EXIT_CLUSTER


class UsageError(ShellError):
    code = EXIT_INVALID


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    usage: str
    summary: str
    args_min: int
    args_max: int | None  # None: any number
    aliases: tuple[str, ...] = ()


COMMANDS = (
    Command("set", "set KEY VALUE", "write a value (quote values with spaces: set k \"a b\")", 2, 2),
    Command("get", "get KEY", "print the value of KEY, or (nil)", 1, 1),
    Command("del", "del KEY [KEY ...]", "delete keys", 1, None, aliases=("delete",)),
    Command("mset", "mset KEY VALUE [KEY VALUE ...]", "write many pairs in one pipelined batch", 2, None),
    Command("mget", "mget KEY [KEY ...]", "print the values of many keys, one per line", 1, None),
    Command("keys", "keys [PREFIX] [LIMIT]",
            f"list keys starting with PREFIX (\"\" or * for all), at most LIMIT (default {KEYS_LIMIT_DEFAULT})",
            0, 2),
    Command("stats", "stats [NODE]", "a node's counters (default: the first node given)", 0, 1),
    Command("cluster", "cluster", "members and their states", 0, 0),
    Command("partitions", "partitions", "the partition map", 0, 0),
    Command("use", "use [w=N] [r=N]",
            "set the write/read quorum of later commands (w=default resets); alone: show them", 0, 2),
    Command("help", "help [COMMAND]", "list the commands, or explain one", 0, 1),
    Command("exit", "exit", "leave the shell (also quit, Ctrl-D)", 0, 0, aliases=("quit",)),
)
COMMAND_BY_NAME = {name: command for command in COMMANDS for name in (command.name, *command.aliases)}


def show(value: str | bytes) -> str:
    return value if isinstance(value, str) else repr(value)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


@dataclass(frozen=True, slots=True)
class Outcome:
    code: int
    leave: bool = False


class Session:
    """One client, sticky quorum settings, and the commands; output goes through ``out``/``err``."""

    def __init__(self, client, out: Callable[[str], None], err: Callable[[str], None]) -> None:
        self.client = client
        self.out = out
        self.err = err
        self.w: int | None = None  # None: the client's default
        self.r: int | None = None

    def execute(self, line: str) -> Outcome:
        from zkv import InvalidRequest, ZkvError
        try:
            words = shlex.split(line)
        except ValueError as error:  # an unclosed quote
            return self.fail(UsageError(f"cannot parse the line: {error}"))
        if not words:
            return Outcome(EXIT_OK)
        command = COMMAND_BY_NAME.get(words[0].lower())
        if command is None:
            return self.fail(UsageError(f"unknown command {words[0]!r} (type help for the list)"))
        args = words[1:]
        if len(args) < command.args_min or (command.args_max is not None and len(args) > command.args_max):
            return self.fail(UsageError(f"usage: {command.usage}"))
        if command.name == "exit":
            return Outcome(EXIT_OK, leave=True)
        try:
            return Outcome(getattr(self, f"do_{command.name}")(args))
        except ShellError as error:
            return self.fail(error)
        except InvalidRequest as error:
            return self.fail(UsageError(_one_line(error)))
        except ZkvError as error:
            return self.fail(ShellError(_one_line(error)))
        except KeyboardInterrupt:
            return self.fail(ShellError("interrupted"))
        except Exception as error:  # a bug must not end the user's session: report it on one line
            return self.fail(ShellError(f"unexpected {type(error).__name__}: {_one_line(error)}"))

    def fail(self, error: ShellError) -> Outcome:
        self.err(f"error: {_one_line(error)}")
        return Outcome(error.code)

    # -- commands: each returns an exit code -----------------------------------------------------------

    def do_set(self, args: list[str]) -> int:
        self.client.set(args[0], args[1], w=self.w)
        self.out("OK")
        return EXIT_OK

    def do_get(self, args: list[str]) -> int:
        value = self.client.get(args[0], r=self.r)
        self.out(NIL if value is None else show(value))
        return EXIT_NOT_FOUND if value is None else EXIT_OK

    def do_del(self, args: list[str]) -> int:
        if len(args) == 1:
            self.client.delete(args[0], w=self.w)
        else:
            futures = [self.client.delete_async(key, w=self.w) for key in args]
            for future in futures:
                try:
                    future.result(self.client.timeout + 2.0)
                except TimeoutError:
                    raise ShellError("the cluster did not answer in time") from None
        self.out("OK")
        return EXIT_OK

    def do_mset(self, args: list[str]) -> int:
        if len(args) % 2:
            raise UsageError("usage: mset KEY VALUE [KEY VALUE ...] (a value is missing)")
        self.client.mset(list(zip(args[0::2], args[1::2])), w=self.w)
        self.out("OK")
        return EXIT_OK

    def do_mget(self, args: list[str]) -> int:
        values = self.client.mget(args, r=self.r)
        for value in values:
            self.out(NIL if value is None else show(value))
        return EXIT_NOT_FOUND if any(value is None for value in values) else EXIT_OK

    def do_keys(self, args: list[str]) -> int:
        prefix = args[0] if args else ""
        if prefix.endswith("*"):
            prefix = prefix[:-1]  # "user:*" reads as the prefix "user:"
        limit = _positive(args[1], "LIMIT", None) if len(args) > 1 else KEYS_LIMIT_DEFAULT
        prefix_bytes = prefix.encode("utf-8")
        found: list = []
        more = False
        for key, _ in self.client.dump(r=self.r):
            if (key if isinstance(key, bytes) else key.encode("utf-8")).startswith(prefix_bytes):
                if len(found) == limit:
                    more = True
                    break
                found.append(key)
        for key in sorted(found, key=lambda k: k if isinstance(k, bytes) else k.encode("utf-8")):
            self.out(show(key))
        if more:
            self.out("... (more)")
        elif not found:
            self.out("(empty)")
        return EXIT_OK

    def do_stats(self, args: list[str]) -> int:
        from zkv.tables import format_stats
        self.out(format_stats(self.client.inspect("stats", node=args[0] if args else None)))
        return EXIT_OK

    def do_cluster(self, args: list[str]) -> int:
        from zkv.tables import format_cluster
        self.out(format_cluster(self.client.inspect("cluster")))
        return EXIT_OK

    def do_partitions(self, args: list[str]) -> int:
        from zkv.tables import format_partitions
        self.out(format_partitions(self.client.inspect("partitions")))
        return EXIT_OK

    def do_use(self, args: list[str]) -> int:
        settings = {"w": self.w, "r": self.r}
        for arg in args:
            name, equals, value = arg.partition("=")
            name = name.lower()
            if not equals or name not in settings:
                raise UsageError(f"usage: use [w=N] [r=N] (not {arg!r})")
            settings[name] = None if value.lower() == "default" else _positive(value, name, QUORUM_MAX)
        self.w, self.r = settings["w"], settings["r"]
        self.out(f"w={_quorum_text(self.w)} r={_quorum_text(self.r)}")
        return EXIT_OK

    def do_help(self, args: list[str]) -> int:
        if args:
            command = COMMAND_BY_NAME.get(args[0].lower())
            if command is None:
                raise UsageError(f"unknown command {args[0]!r} (type help for the list)")
            aliases = f" (also: {', '.join(command.aliases)})" if command.aliases else ""
            self.out(f"{command.usage}{aliases}\n  {command.summary}")
            return EXIT_OK
        width = max(len(command.usage) for command in COMMANDS)
        lines = [f"  {command.usage.ljust(width)}  {command.summary}" for command in COMMANDS]
        self.out("commands:\n" + "\n".join(lines))
        return EXIT_OK


def _positive(text: str, name: str, maximum: int | None) -> int:
    if not text.isdigit() or int(text) < 1 or (maximum is not None and int(text) > maximum):
        bound = f" between 1 and {maximum}" if maximum is not None else " (1 or more)"
        raise UsageError(f"{name} must be an integer{bound}, not {text!r}")
    return int(text)


def _quorum_text(value: int | None) -> str:
    return "default" if value is None else str(value)


# -- front ends ----------------------------------------------------------------------------------------

def _echo(text: str) -> None:
    click.echo(text)


def _echo_error(text: str) -> None:
    click.echo(text, err=True)


def run_script(session: Session, lines) -> int:
    """Run one command per line (bytes lines); the exit code is the last command's."""
    code = EXIT_OK
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            code = session.fail(UsageError(f"line {number} is not valid UTF-8")).code
            continue
        if not line or line.startswith("#"):
            continue
        outcome = session.execute(line)
        if outcome.leave:
            break  # like a POSIX shell's bare ``exit``: the status of the command before it
        code = outcome.code
    return code


def _history(path: str):
    from prompt_toolkit.history import FileHistory, InMemoryHistory
    path = os.path.expanduser(path)
    try:
        with open(path, "ab"):
            pass
    except OSError as error:
        _echo_error(f"warning: history is not kept: {path}: {error.strerror}")
        return InMemoryHistory()
    return FileHistory(path)


def _completer():
    from prompt_toolkit.completion import NestedCompleter
    names = sorted(COMMAND_BY_NAME)
    nested: dict = {name: None for name in names}
    nested["help"] = {name: None for name in names}
    nested["use"] = {"w=": None, "r=": None}
    return NestedCompleter.from_nested_dict(nested)


def run_interactive(session: Session, history_file: str, prompt_text: str) -> int:
    from prompt_toolkit import PromptSession
    prompt = PromptSession(history=_history(history_file), completer=_completer(), complete_while_typing=False)
    _echo_error("connected; type help for the commands, exit or Ctrl-D to leave")
    while True:
        try:
            line = prompt.prompt(prompt_text)
        except KeyboardInterrupt:
            continue  # Ctrl-C drops the line being typed, as in a shell
        except EOFError:
            return EXIT_OK
        if line.strip().startswith("#"):
            continue
        if session.execute(line).leave:
            return EXIT_OK


@click.command("shell")
@click.option("--nodes", default="127.0.0.1:8080", show_default=True,
              help="Comma-separated HOST:PORT of any cluster node(s); the rest is discovered.")
@click.option("--timeout", type=click.FloatRange(0.01, 600), default=5.0, show_default=True,
              help="Seconds to wait for each request (and to connect).")
@click.option("--history-file", default="~/.zkv_history", show_default=True,
              help="File that keeps the command history across sessions.")
def shell_command(nodes: str, timeout: float, history_file: str) -> None:
    """An interactive shell on a cluster (set, get, del, mset, mget, keys, stats, cluster, use, help).

    With stdin not a terminal, runs one command per line and exits with the code of
    the last one: 0 ok, 1 key not found, 2 bad usage, 3 cluster error.
    """
    from zkv import Client, InvalidRequest, ZkvError
    try:
        client = Client(nodes, timeout=timeout, connect_timeout=timeout)
    except InvalidRequest as error:
        _echo_error(f"error: {_one_line(error)}")
        sys.exit(EXIT_INVALID)
    except ZkvError as error:
        _echo_error(f"error: cannot connect: {_one_line(error)}")
        sys.exit(EXIT_CLUSTER)
    try:
        session = Session(client, _echo, _echo_error)
        if sys.stdin.isatty():
            code = run_interactive(session, history_file, f"zkv({client.seeds[0]})> ")
        else:
            code = run_script(session, sys.stdin.buffer)
    finally:
        client.close()
    sys.exit(code)

"""``zkv client load`` and ``zkv client dump``: bulk import and export of a whole cluster.

This module owns the two file formats and the way lines become writes:

- JSON Lines, one record per line: ``{"key": "...", "value": "..."}``; a key or
  value that is bytes is written ``key_base64`` / ``value_base64`` instead (dump
  does so for every bytes value, and for every key that is not UTF-8 text), so a
  dump loaded into another cluster reproduces the data exactly, types included.
- CSV, two columns ``key,value`` (text only), with an optional ``key,value``
  header line.

Theory of operation of ``load``::

    file --lines--> parse_jsonl_line / parse_csv_row --(ok)--> chunk (--batch pairs)
                           |                                      | full
                           +--(bad)--> "line N: why" on stderr    v
                                       skip, or stop              Client.mset_async
                                                                  (at most IN_FLIGHT_CHUNKS_MAX
                                                                   chunks in flight)

A line is either loaded, or reported with its number: never dropped silently.
Blank lines carry no record and are skipped (they still count for line
numbers). Within one client, versions are stamped in submission order, so when
a key appears twice the later line wins even with chunks in flight.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import os
import sys
import time

import click

EXIT_INVALID = 2  # the values of zkv.cli's exit codes (not imported: zkv.cli imports this module)
EXIT_CLUSTER = 3
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process killed by SIGPIPE

BATCH_DEFAULT = 1000
BATCH_MAX = 100_000
IN_FLIGHT_CHUNKS_MAX = 4
JSON_FIELDS = ("key", "key_base64", "value", "value_base64")
FORMAT_BY_EXTENSION = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}


class BadLine(ValueError):
    """One input line that cannot become a write; the message says why (without the line number)."""


# -- parsing (pure: text in, (key, value) or BadLine out) -------------------------------------------------

def _json_type(value) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}.get(type(value), "string")


def _text_field(record: dict, name: str) -> str | None:
    if name not in record:
        return None
    value = record[name]
    if not isinstance(value, str):
        raise BadLine(f'"{name}" must be a string, not {_json_type(value)}')
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadLine(f'"{name}" is not valid Unicode text (it holds a lone surrogate)') from None
    return value


def _field(record: dict, name: str) -> str | bytes:
    """``name`` (text) or ``name_base64`` (bytes): exactly one of them must be there."""
    text = _text_field(record, name)
    encoded = _text_field(record, f"{name}_base64")
    if text is not None and encoded is not None:
        raise BadLine(f'both "{name}" and "{name}_base64" are given')
    if text is not None:
        return text
    if encoded is None:
        raise BadLine(f'missing "{name}"')
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadLine(f'"{name}_base64" is not valid base64') from None


def check_pair(key: str | bytes, value: str | bytes) -> tuple[str | bytes, str | bytes]:
    """The limits the cluster enforces, checked here so that a bad line fails alone, not its batch."""
    from zkv.core.placement import key_bytes
    from zkv.core.quorum import InvalidInput, check_key, check_value
    try:
        check_key(key_bytes(key))
        check_value(value)
    except InvalidInput as error:
        raise BadLine(str(error)) from None
    return key, value


def parse_jsonl_line(line: bytes) -> tuple[str | bytes, str | bytes]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise BadLine("not valid UTF-8") from None
    try:
        record = json.loads(text)
    except ValueError as error:
        raise BadLine(f"not valid JSON ({error})") from None
    if not isinstance(record, dict):
        raise BadLine(f"expected a JSON object, not {_json_type(record)}")
    unknown = sorted(set(record) - set(JSON_FIELDS))
    if unknown:
        raise BadLine(f'unknown field "{unknown[0]}" (expected key/key_base64 and value/value_base64)')
    return check_pair(_field(record, "key"), _field(record, "value"))


def parse_csv_row(row: list[str]) -> tuple[str, str]:
    if len(row) != 2:
        raise BadLine(f"expected 2 columns (key,value), found {len(row)}")
    for name, cell in zip(("key", "value"), row):
        try:
            cell.encode("utf-8")
        except UnicodeEncodeError:
            raise BadLine(f"the {name} is not valid UTF-8") from None
    return check_pair(row[0], row[1])


def read_jsonl(stream):
    """(line number, (key, value) or BadLine) for every non-blank line of a binary stream."""
    for number, line in enumerate(stream, start=1):
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]  # a UTF-8 byte order mark
        if not line.strip():
            continue
        try:
            yield number, parse_jsonl_line(line)
        except BadLine as error:
            yield number, error


def read_csv(stream):
    """(line number, (key, value) or BadLine) for every record of a binary CSV stream.

    The text is decoded with surrogateescape so that one line that is not UTF-8 is
    reported alone instead of ending the read. A quoted value may span lines; a
    record is numbered by the line it starts on.
    """
    import csv
    import io

    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text, strict=True)
    next_line = 1
    first = True
    while True:
        number = next_line
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            next_line = reader.line_num + 1
            yield number, BadLine(f"not valid CSV ({error})")
            continue
        next_line = reader.line_num + 1
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # a blank line
        if first and [cell.strip().lower() for cell in row] == ["key", "value"]:
            first = False
            continue  # the header
        first = False
        try:
            yield number, parse_csv_row(row)
        except BadLine as error:
            yield number, error


# -- output helpers ----------------------------------------------------------------------------------

def _progress(quiet: bool, **options):
    """A tqdm bar on stderr, disabled when stderr is not a terminal or with --quiet."""
    from tqdm import tqdm
    return tqdm(file=sys.stderr, disable=quiet or not sys.stderr.isatty(), dynamic_ncols=True, **options)


def _say(bar, message: str) -> None:
    """One line on stderr that does not tear the progress bar."""
    bar.write(message, file=sys.stderr)


def _format_for(path: str, given: str | None) -> str:
    if given:
        return given
    if path == "-":
        raise click.UsageError("reading stdin ('-'): give --format jsonl or --format csv")
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMAT_BY_EXTENSION:
        raise click.UsageError(f"cannot tell the format of {path!r} from its extension: give --format jsonl|csv")
    return FORMAT_BY_EXTENSION[extension]


# -- zkv client load -----------------------------------------------------------------------------------

class _Loader:
    """Chunks of pairs sent with the pipelined client, a bounded number in flight.

    ``loaded`` counts the lines whose write was acknowledged. The first chunk the
    cluster does not acknowledge in full sets ``failure``; nothing is sent after it.
    """

    def __init__(self, client, batch: int, w: int | None) -> None:
        self.client = client
        self.batch = batch
        self.w = w
        self.chunk: dict = {}  # canonical key -> (key, value, line numbers)
        self.chunk_line_count = 0
        self.in_flight: collections.deque = collections.deque()  # (future, chunk)
        self.loaded = 0
        self.failure: str | None = None

    def add(self, number: int, key, value) -> bool:
        """Queue one pair; True when that filled a chunk and sent it."""
        from zkv.core.placement import key_bytes
        canonical = key_bytes(key)  # "a" and b"a" are one key: the later line wins
        previous = self.chunk.pop(canonical, None)
        self.chunk[canonical] = (key, value, (previous[2] if previous else []) + [number])
        self.chunk_line_count += 1
        if self.chunk_line_count >= self.batch:
            self.send()
            return True
        return False

    def send(self) -> None:
        if not self.chunk or self.failure:
            return
        future = self.client.mset_async([(key, value) for key, value, _ in self.chunk.values()], w=self.w)
        self.in_flight.append((future, self.chunk))
        self.chunk, self.chunk_line_count = {}, 0
        while len(self.in_flight) > IN_FLIGHT_CHUNKS_MAX:
            self.wait_one()
        if self.failure:
            raise LoadFailed(self.failure)

    def wait_one(self) -> None:
        """Wait for the oldest chunk in flight and count its lines."""
        from zkv import PartialFailure, ZkvError
        from zkv.core.placement import key_bytes
        future, chunk = self.in_flight.popleft()
        lines = sorted(number for _, _, numbers in chunk.values() for number in numbers)
        try:
            future.result(self.client.timeout + 2.0)
        except PartialFailure as error:
            failed_keys = {key_bytes(key) for key in error.errors}
            failed = sorted(number for canonical, (_, _, numbers) in chunk.items() if canonical in failed_keys
                            for number in numbers)
            self.loaded += len(lines) - len(failed)
            first = next(iter(error.errors.values()))
            shown = ", ".join(str(number) for number in failed[:5]) + (", ..." if len(failed) > 5 else "")
            self._failed(f"lines {lines[0]}-{lines[-1]}: {len(failed)} of {len(lines)} lines were not "
                         f"acknowledged (line {shown}); first error: {first}")
            return
        except ZkvError as error:
            self._failed(f"lines {lines[0]}-{lines[-1]}: not acknowledged: {error}")
            return
        except TimeoutError:
            self._failed(f"lines {lines[0]}-{lines[-1]}: not acknowledged in time")
            return
        self.loaded += len(lines)

    def _failed(self, message: str) -> None:
        if self.failure is None:
            self.failure = message

    def finish(self) -> None:
        """Send the last chunk and wait for every chunk in flight (also after a failure, to count them)."""
        self.send()
        while self.in_flight:
            self.wait_one()
        if self.failure:
            raise LoadFailed(self.failure)


class LoadFailed(Exception):
    """The cluster did not acknowledge a chunk (quorum not reached, timeout)."""


@click.command("load")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--format", "format", type=click.Choice(["jsonl", "csv"]), default=None,
              help="Input format [default: from the extension: .jsonl/.ndjson/.json or .csv].")
@click.option("--batch", type=click.IntRange(1, BATCH_MAX), default=BATCH_DEFAULT, show_default=True,
              help="Pairs per pipelined mset.")
@click.option("--w", type=click.IntRange(1, 15), default=None, help="Replicas that must acknowledge [default: 2].")
@click.option("--on-error", type=click.Choice(["skip", "stop"]), default="skip", show_default=True,
              help="On a bad line: report it and go on (exit 2 at the end), or stop there (exit 2).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_obj
def load_command(obj, file, format, batch, w, on_error, quiet) -> None:  # noqa: A002 (names ZKV_CLIENT_LOAD_FORMAT)
    """Load FILE (JSON Lines or CSV; '-' is stdin) into the cluster.

    \b
    JSON Lines: {"key": "k", "value": "v"}; key_base64 / value_base64 for bytes.
    CSV:        key,value rows, an optional "key,value" header.

    Every bad line is reported on stderr with its number. Exit codes: 0 all loaded,
    2 bad lines (or bad usage), 3 the cluster did not take a write.
    """
    file_format = _format_for(file, format)
    try:
        stream = sys.stdin.buffer if file == "-" else open(file, "rb")
    except OSError as error:
        raise click.UsageError(f"cannot read {file}: {error.strerror}") from None
    try:
        code = _load(obj, stream, file_format, batch, w, on_error, quiet)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    sys.exit(code)


def _load(obj, stream, file_format: str, batch: int, w: int | None, on_error: str, quiet: bool) -> int:
    client = obj.client()
    loader = _Loader(client, batch, w)
    records = read_jsonl(stream) if file_format == "jsonl" else read_csv(stream)
    total_bytes = _size(stream)
    bad = 0
    stopped_at = None
    started = time.monotonic()
    with _progress(quiet, total=total_bytes, unit="B", unit_scale=True, desc="load") as bar:
        position = 0
        try:
            for number, result in records:
                if isinstance(result, BadLine):
                    bad += 1
                    _say(bar, f"line {number}: {result}")
                    if on_error == "stop":
                        stopped_at = number
                        break
                    continue
                if loader.add(number, *result) and total_bytes:
                    now = _tell(stream)
                    bar.update(max(0, now - position))
                    position = now
            loader.finish()
        except LoadFailed as error:
            _say(bar, f"error: {error}")
            failed = True
            try:
                loader.finish()  # count the chunks still in flight
            except LoadFailed:
                pass  # already reported: the first failure is the one that matters
        else:
            failed = False
            if total_bytes:
                bar.update(max(0, total_bytes - position))
    elapsed = time.monotonic() - started
    if failed:
        click.echo(f"loaded {loader.loaded} keys, then stopped at the failure, in {elapsed:.1f} s", err=True)
        return EXIT_CLUSTER
    if stopped_at is not None:
        click.echo(f"loaded {loader.loaded} keys in {elapsed:.1f} s; stopped at bad line {stopped_at}", err=True)
    else:
        click.echo(f"loaded {loader.loaded} keys ({bad} bad lines skipped) in {elapsed:.1f} s", err=True)
    return EXIT_INVALID if bad else 0


def _size(stream) -> int | None:
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return None
    import stat as stat_module
    return stat.st_size if stat_module.S_ISREG(stat.st_mode) and stat.st_size else None


def _tell(stream) -> int:
    try:
        return stream.tell()
    except OSError:
        return 0


# -- zkv client dump ---------------------------------------------------------------------------------

def dump_line(key: str | bytes, value: str | bytes) -> bytes:
    """One JSON Lines record; bytes (and keys that are not UTF-8 text) go base64."""
    record = {}
    if isinstance(key, str):
        record["key"] = key
    else:
        record["key_base64"] = base64.b64encode(key).decode("ascii")
    if isinstance(value, str):
        record["value"] = value
    else:
        record["value_base64"] = base64.b64encode(value).decode("ascii")
    return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


@click.command("dump")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file (replaced only once the dump is complete) [default: stdout].")
@click.option("--r", type=click.IntRange(1, 15), default=None,
              help="Replicas each partition is read from and merged [default: 2].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_obj
def dump_command(obj, output, r, quiet) -> None:
    """Write every live key of the cluster as JSON Lines (the format `load` reads).

    Each partition is read from R replicas and merged by version, so the dump holds
    every write acknowledged before it started. Exit 3 if a partition cannot be read.
    """
    client = obj.client()
    if output is None:
        sys.exit(_dump_to(client, sys.stdout.buffer, r, quiet))
    import tempfile
    directory = os.path.dirname(os.path.abspath(output))
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(prefix=".zkv-dump-", dir=directory)
        with os.fdopen(handle, "wb") as sink:
            code = _dump_to(client, sink, r, quiet)
        if code == 0:
            os.replace(temporary, output)
    except OSError as error:
        click.echo(f"error: cannot write {output}: {error.strerror or error}", err=True)
        code = EXIT_INVALID
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
    sys.exit(code)


def _dump_to(client, sink, r: int | None, quiet: bool) -> int:
    from zkv import ZkvError
    partitions = client.config.partitions
    keys = 0
    started = time.monotonic()
    with _progress(quiet, total=partitions, unit="partition", desc="dump") as bar:
        for partition in range(partitions):
            try:
                for key, value in client.dump_partition(partition, r=r):
                    sink.write(dump_line(key, value))
                    keys += 1
                if partition == partitions - 1:
                    sink.flush()
            except ZkvError as error:
                _say(bar, f"error: dump failed, a partition could not be read: {error}")
                return EXIT_CLUSTER
            except BrokenPipeError:
                _silence_stdout()
                return EXIT_BROKEN_PIPE
            bar.update(1)
            bar.set_postfix_str(f"{keys} keys", refresh=False)
    click.echo(f"dumped {keys} keys from {partitions} partitions in {time.monotonic() - started:.1f} s", err=True)
    return 0


def _silence_stdout() -> None:
    """The reader went away: send what is left to /dev/null so that exiting does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())

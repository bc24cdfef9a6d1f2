"""``zkv client load`` / ``zkv client dump`` against real 3-node clusters."""

from __future__ import annotations

import base64
import json
import subprocess
import sys


def zkv_client(cluster, *args, stdin: bytes | None = None, options=(), timeout=60) -> subprocess.CompletedProcess:
    nodes = ",".join(node.address for node in cluster.running_nodes())
    return subprocess.run([sys.executable, "-m", "zkv", "client", "--nodes", nodes, *options, *args], input=stdin,
                          capture_output=True, timeout=timeout)


def jsonl(*records) -> str:
    """Records as JSON Lines; a str record is written as is (for lines that are not JSON)."""
    return "".join((record if isinstance(record, str) else json.dumps(record)) + "\n" for record in records)


def errors_of(result) -> list[str]:
    return [line for line in result.stderr.decode().splitlines() if line.startswith("line ")]


def test_load_jsonl_and_csv_with_bad_lines(cluster3, tmp_path):
    client = cluster3.client()

    good = tmp_path / "good.jsonl"
    good.write_text(jsonl({"key": "user:1", "value": "Ada"},
                          {"key": "blob", "value_base64": base64.b64encode(b"\x00\xff\x10").decode()},
                          "",  # a blank line: no record, skipped
                          {"key_base64": base64.b64encode(b"\xfe\xedkey").decode(), "value": "bytes key"},
                          {"key": "ключ", "value": "значение\nwith a newline"},
                          {"key": "user:1", "value": "Ada Lovelace"}))  # a later line wins
    result = zkv_client(cluster3, "load", str(good), "--batch", "2")
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().splitlines()[-1].startswith("loaded 5 keys (0 bad lines skipped) in ")
    assert "%|" not in result.stderr.decode()  # no progress bar when stderr is not a terminal
    assert client.get("user:1") == "Ada Lovelace"
    assert client.get("blob") == b"\x00\xff\x10"
    assert client.get(b"\xfe\xedkey") == "bytes key"
    assert client.get("ключ") == "значение\nwith a newline"

    # A write quorum the cluster can never meet: exit 3, and the summary says nothing was loaded.
    refused = zkv_client(cluster3, "load", str(good), "--w", "9", options=("--timeout", "1"))
    assert refused.returncode == 3
    stderr = refused.stderr.decode().splitlines()
    assert stderr[0].startswith("error: lines 1-6: not acknowledged: a quorum of 9 can never be met")
    assert stderr[-1].startswith("loaded 0 keys, then stopped at the failure")

    table = tmp_path / "table.csv"
    table.write_text('key,value\ncsv:1,plain\n"csv:2","with, comma"\n\ncsv:3,"two\nlines"\ncsv:4,a,b\ncsv:5,last\n')
    result = zkv_client(cluster3, "load", str(table))
    assert result.returncode == 2
    assert errors_of(result) == ["line 7: expected 2 columns (key,value), found 3"]
    assert result.stderr.decode().splitlines()[-1].startswith("loaded 4 keys (1 bad lines skipped) in ")
    assert client.mget(["csv:1", "csv:2", "csv:3", "csv:4", "csv:5", "key"]) == [
        "plain", "with, comma", "two\nlines", None, "last", None]

    bad = jsonl({"key": "bad:1", "value": "ok"},
                "this is not json",
                {"value": "no key"},
                "",
                {"key": "bad:2"},
                {"key": "bad:3", "value": 17},
                {"key": "bad:4", "value_base64": "not*base64"},
                {"key": "", "value": "empty key"},
                ["key", "value"],
                {"key": "bad:5", "value": "ok", "ttl": 3},
                {"key": "bad:6", "value": "also ok"})
    expected_errors = [
        "line 2: not valid JSON (Expecting value: line 1 column 1 (char 0))",
        'line 3: missing "key"',
        'line 5: missing "value"',
        'line 6: "value" must be a string, not number',
        'line 7: "value_base64" is not valid base64',
        "line 8: key must not be empty",
        "line 9: expected a JSON object, not array",
        'line 10: unknown field "ttl" (expected key/key_base64 and value/value_base64)',
    ]
    skipped = zkv_client(cluster3, "load", "-", "--format", "jsonl", stdin=bad.encode())
    assert skipped.returncode == 2
    assert errors_of(skipped) == expected_errors
    assert skipped.stderr.decode().splitlines()[-1].startswith("loaded 2 keys (8 bad lines skipped) in ")
    assert client.mget(["bad:1", "bad:2", "bad:5", "bad:6"]) == ["ok", None, None, "also ok"]

    stop_file = tmp_path / "stop.ndjson"
    stop_file.write_text(bad.replace("bad:", "stop:"))
    stopped = zkv_client(cluster3, "load", str(stop_file), "--on-error", "stop", "--quiet")
    assert stopped.returncode == 2
    assert errors_of(stopped) == [expected_errors[0]]
    assert "stopped at bad line 2" in stopped.stderr.decode()
    assert client.mget(["stop:1", "stop:6"]) == ["ok", None]  # loaded before the bad line, not after

    no_format = zkv_client(cluster3, "load", "-", stdin=b"")
    assert no_format.returncode == 2 and b"--format" in no_format.stderr
    unknown_extension = tmp_path / "data.txt"
    unknown_extension.write_text("k,v\n")
    assert zkv_client(cluster3, "load", str(unknown_extension)).returncode == 2
    assert zkv_client(cluster3, "load", str(unknown_extension), "--format", "csv").returncode == 0


def read_dump(output: bytes) -> dict:
    data = {}
    for line in output.decode("utf-8").splitlines():
        record = json.loads(line)
        key = record["key"] if "key" in record else base64.b64decode(record["key_base64"])
        value = record["value"] if "value" in record else base64.b64decode(record["value_base64"])
        assert key not in data
        data[key] = value
    return data


def test_dump_matches_client_and_loads_into_another_cluster(make_cluster, tmp_path):
    source = make_cluster(3)
    client = source.client()
    expected = {f"user:{index}": f"name {index}" for index in range(300)}
    expected.update({"blob": b"\x00\x01\xff", "text-as-bytes": b"plain ascii bytes", "emoji 🙂": "ünïcode",
                     "multi\nline key": "tab\tand \"quotes\"", b"\xff\xfe not utf-8": b"\xc3\x28"})
    client.mset(list(expected.items()))
    client.set("deleted", "gone soon")
    client.delete("deleted")

    dump_file = tmp_path / "dump.jsonl"
    result = zkv_client(source, "dump", "--output", str(dump_file))
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().splitlines()[-1].startswith(f"dumped {len(expected)} keys from 64 partitions")
    to_stdout = zkv_client(source, "dump")
    assert to_stdout.returncode == 0 and to_stdout.stdout == dump_file.read_bytes()
    lines = [json.loads(line) for line in to_stdout.stdout.decode().splitlines()]
    assert {"key_base64": base64.b64encode(b"\xff\xfe not utf-8").decode(),
            "value_base64": base64.b64encode(b"\xc3\x28").decode()} in lines
    assert {"key": "text-as-bytes", "value_base64": base64.b64encode(b"plain ascii bytes").decode()} in lines

    dumped = read_dump(to_stdout.stdout)
    assert dumped == expected and "deleted" not in dumped
    keys = list(dumped)
    assert client.mget(keys) == [dumped[key] for key in keys]  # the dump is what the client reads

    target = make_cluster(3)
    loaded = zkv_client(target, "load", str(dump_file), "--batch", "64")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stderr.decode().splitlines()[-1].startswith(f"loaded {len(expected)} keys (0 bad lines")
    again = zkv_client(target, "dump")
    assert again.returncode == 0
    assert again.stdout == to_stdout.stdout  # same partitioning, same key order: byte for byte
    assert target.client().get(b"\xff\xfe not utf-8") == b"\xc3\x28"

    # A partition that cannot be read from R replicas fails the dump (exit 3) and leaves no file.
    source.nodes["node-3"].stop()
    failed_file = tmp_path / "failed.jsonl"
    failed = zkv_client(source, "dump", "--r", "3", "--output", str(failed_file))
    assert failed.returncode == 3
    assert failed.stderr.decode().startswith("error: dump failed, a partition could not be read: partition ")
    assert not failed_file.exists() and not list(tmp_path.glob(".zkv-dump-*"))

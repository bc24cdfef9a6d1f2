"""The README's commands, run for real so that the README cannot rot.

The three ``zkv node`` commands of "A cluster by hand" are started (on free
ports, data under the test's folder), then every ``console`` block is replayed:
each ``$ command`` runs in bash and its output (stdout and stderr) must match
the lines that follow it (runs of spaces compared as one), where a line ``...``
stands for any number of lines and ``...`` inside a line for any text. Every ``python`` block is executed
against the same cluster. The quick start's scripts must exist and be runnable.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zkv.localcluster import Cluster, NodeProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
README_PORTS = (8080, 8081, 8082)


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def node_commands() -> list[str]:
    for block in blocks("sh"):
        commands = [line for line in block.splitlines() if line.startswith("zkv node ")]
        if commands:
            return commands
    raise AssertionError("README has no block with the zkv node commands")


class Rewriter:
    """Maps the README's fixed ports and paths to this test's free ports and folder."""

    def __init__(self, folder: Path) -> None:
        self.ports = {port: free_port() for port in README_PORTS}
        self.http_ports = {port + 1000: free_port() for port in README_PORTS}
        self.folder = folder

    def __call__(self, text: str) -> str:
        for old, new in {**self.ports, **self.http_ports}.items():
            text = re.sub(rf"(?<![0-9]){old}(?![0-9])", str(new), text)
        text = text.replace("/tmp/zkv/", f"{self.folder}/")
        return text


@pytest.fixture(scope="module")
def readme_cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("readme")
    rewrite = Rewriter(folder)
    cluster = Cluster(folder, 0)
    try:
        for index, command in enumerate(node_commands()):
            words = rewrite(command).split()
            node_id = words[words.index("--id") + 1]
            port = int(words[words.index("--port") + 1])
            http_port = rewrite.http_ports[README_PORTS[index] + 1000]
            node = NodeProcess(node_id, port, http_port, None, folder / f"{node_id}.log")
            node.command = lambda words=words, http_port=http_port: [  # the README's exact options
                sys.executable, "-m", "zkv", *words[1:], "--http-port", str(http_port)]
            cluster.nodes[node_id] = node
            node.start()
            if index == 0:
                cluster.wait_serving(node)
        cluster.wait_converged()
        yield cluster, rewrite
    finally:
        cluster.stop()


def matches(expected: list[str], actual: list[str]) -> bool:
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head == "...":
        return any(matches(rest, actual[skip:]) for skip in range(len(actual) + 1))
    if not actual:
        return False
    if head and set(head) <= {"-", " "}:  # a table's rule: its widths follow the data
        return bool(actual[0]) and set(actual[0]) <= {"-", " "} and matches(rest, actual[1:])
    pattern = ".*".join(re.escape(" ".join(part.split())) for part in head.split("..."))
    return re.fullmatch(pattern, " ".join(actual[0].split())) is not None and matches(rest, actual[1:])


def console_steps(block: str) -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    return steps


def test_readme_console_blocks(readme_cluster):
    cluster, rewrite = readme_cluster
    environment = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                       HOME=str(rewrite.folder))
    ran = 0
    for block in blocks("console"):
        for command, expected in console_steps(block):
            done = subprocess.run(["bash", "-c", rewrite(command)], capture_output=True, text=True, timeout=60,
                                  env=environment, cwd=ROOT)
            output = (done.stdout + done.stderr).splitlines()
            expected = [rewrite(line) for line in expected]
            assert matches(expected, output), f"$ {command}\nexpected:\n{expected}\ngot:\n{output}"
            ran += 1
    assert ran >= 10


def test_readme_python_blocks(readme_cluster):
    cluster, rewrite = readme_cluster
    for block in blocks("python"):
        exec(compile(rewrite(block), "README.md", "exec"), {})


def test_readme_quick_start_scripts_exist():
    quick_start = blocks("sh")[0]
    for script in ("bin/demo", "bin/test"):
        assert script in quick_start
        assert os.access(ROOT / script, os.X_OK)


def test_readme_configuration_table_matches_the_cli():
    help_text = subprocess.run([sys.executable, "-m", "zkv", "node", "--help"], capture_output=True, text=True,
                               timeout=60).stdout
    rows = re.findall(r"^\| `(--[a-z-]+)` \| `(ZKV_NODE_[A-Z_]+)` \|", README, re.M)
    assert len(rows) >= 12
    for option, variable in rows:
        assert option in help_text, option
        assert variable == "ZKV_NODE_" + option[2:].upper().replace("-", "_")


def test_a_node_configured_only_by_environment_variables(tmp_path):
    port, http_port = free_port(), free_port()
    environment = dict(os.environ, ZKV_NODE_ID="env-node", ZKV_NODE_PORT=str(port),
                       ZKV_NODE_HTTP_PORT=str(http_port), ZKV_NODE_MEMORY="1", ZKV_NODE_PARTITIONS="8")
    process = subprocess.Popen([sys.executable, "-m", "zkv", "node"], env=environment, cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        cluster = Cluster(tmp_path, 0)
        node = NodeProcess("env-node", port, http_port, None, tmp_path / "unused.log", process=process)
        cluster.wait_serving(node)
        stats = cluster.inspect(node, "stats")
        assert stats["node_id"] == "env-node"
        partitions = cluster.inspect(node, "partitions")["partitions"]
        assert len(partitions) == 8
        cluster.stop()
    finally:
        process.kill()
        process.wait(10)

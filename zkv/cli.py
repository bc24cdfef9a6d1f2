"""The ``zkv`` command: ``node``, ``client``, ``shell``, ``bench``, ``demo``.

Every option also reads an environment variable named by click's automatic
scheme: ``ZKV_<COMMAND>_<OPTION>``, e.g. ``ZKV_NODE_ID``, ``ZKV_NODE_JOIN``,
``ZKV_CLIENT_NODES``.

Exit codes of ``zkv client``: 0 done, 1 key not found, 2 bad usage or invalid
request, 3 the cluster could not do it (quorum not reached, timeout).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys

import click

from zkv.core.placement import PARTITIONS_DEFAULT, PARTITIONS_MAX, REPLICATION_DEFAULT

EXIT_NOT_FOUND = 1
EXIT_INVALID = 2
EXIT_CLUSTER = 3


@click.group(context_settings={"auto_envvar_prefix": "ZKV", "help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zkv")
def main() -> None:
    """zkv: a distributed, replicated, partitioned key-value store on ZeroMQ."""


# -- zkv node ------------------------------------------------------------------------------------------

def _address(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST:PORT")
    return f"{host}:{int(port)}"


@main.command()
@click.option("--id", "node_id", required=True, envvar="ZKV_NODE_ID",
              help="Node id, unique in the cluster (e.g. node-1).")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="Port for peers and clients (ZeroMQ ROUTER).")
@click.option("--http-port", type=click.IntRange(0, 65535), default=None,
              help="Port of the HTTP API [default: --port + 1000; 0 turns it off].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--advertise", default=None, help="Host peers should use to reach this node [default: --host].")
@click.option("--join", multiple=True, help="HOST:PORT of a cluster member to join through (repeatable).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Directory for durable storage (LMDB) [default: ./zkv-data/<id>].")
@click.option("--memory", is_flag=True, help="Keep data in memory only (lost when the process ends).")
@click.option("--partitions", type=click.IntRange(1, PARTITIONS_MAX), default=PARTITIONS_DEFAULT, show_default=True,
              help="Partitions in the cluster; fixed when the cluster is created.")
@click.option("--replication", type=click.IntRange(1, 15), default=REPLICATION_DEFAULT, show_default=True,
              help="Replicas per partition (RF).")
@click.option("--leave-timeout", type=click.FloatRange(0, 3600), default=60.0, show_default=True,
              help="Seconds a leaving node waits for its partitions to reach their new owners.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
def node(node_id, port, http_port, host, advertise, join, data_dir, memory, partitions, replication,
         leave_timeout, log_level) -> None:
    """Run a node. Without --join it creates a new cluster."""
    from zkv.core.node import NodeSettings
    from zkv.server.actor import NodeActor
    from zkv.storage import open_storage

    if memory and data_dir:
        raise click.UsageError("choose one of --data-dir and --memory")
    if not memory and data_dir is None:
        data_dir = os.path.join("zkv-data", node_id)
    seeds = []
    for entry in join:
        for part in entry.replace(",", " ").split():
            seeds.append(_address(part))
    if http_port is None:
        http_port = port + 1000 if port + 1000 < 65536 else 0
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s {node_id} %(levelname)s %(message)s")
    storage = open_storage(None if memory else data_dir)
    advertised = advertise or host
    settings = NodeSettings(
        node_id=node_id, address=f"{advertised}:{port}",
        http_address=f"{advertised}:{http_port}" if http_port else "",
        partitions=partitions, replication=replication, seeds=tuple(seeds),
        generation=secrets.randbits(48) | 1, writer_id=secrets.randbits(63),
        leave_timeout_ms=int(leave_timeout * 1000))
    logging.getLogger("zkv.node").info("storage: %s", "memory" if memory else os.path.abspath(data_dir))
    actor = NodeActor(settings, storage, host, port, http_port or None)
    actor.install_signal_handlers()
    code = actor.run()
    if actor.core.fatal:
        click.echo(f"zkv node: {actor.core.fatal}", err=True)
    sys.exit(code)


# -- zkv client -------------------------------------------------------------------------------------------

class _ClientContext:
    def __init__(self, nodes: str, timeout: float) -> None:
        self.nodes = nodes
        self.timeout = timeout
        self._client = None

    def client(self):
        from zkv import Client, ZkvError
        if self._client is None:
            try:
                self._client = Client(self.nodes, timeout=self.timeout, connect_timeout=self.timeout)
            except ZkvError as error:
                _fail_with(error)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _fail_with(error: Exception):
    from zkv import InvalidRequest
    click.echo(f"error: {error}", err=True)
    sys.exit(EXIT_INVALID if isinstance(error, InvalidRequest) else EXIT_CLUSTER)


@main.group()
@click.option("--nodes", default="127.0.0.1:8080", show_default=True,
              help="Comma-separated HOST:PORT of any cluster node(s); the rest is discovered.")
@click.option("--timeout", type=click.FloatRange(0.01, 600), default=5.0, show_default=True,
              help="Seconds to wait for each request.")
@click.pass_context
def client(ctx, nodes, timeout) -> None:
    """Talk to a cluster: get, set, delete, stats, cluster, partitions, load, dump."""
    ctx.obj = _ClientContext(nodes, timeout)
    ctx.call_on_close(ctx.obj.close)


@client.command("set")
@click.argument("key")
@click.argument("value")
@click.option("--w", type=click.IntRange(1, 15), default=None, help="Replicas that must acknowledge [default: 2].")
@click.pass_obj
def client_set(obj: _ClientContext, key, value, w) -> None:
    """Write KEY=VALUE with a write quorum."""
    from zkv import ZkvError
    try:
        obj.client().set(key, value, w=w)
    except ZkvError as error:
        _fail_with(error)
    click.echo("OK")


@client.command("get")
@click.argument("key")
@click.option("--r", type=click.IntRange(1, 15), default=None, help="Replicas to read [default: 2].")
@click.pass_obj
def client_get(obj: _ClientContext, key, r) -> None:
    """Print the value of KEY (exit 1 when it does not exist)."""
    from zkv import ZkvError
    try:
        value = obj.client().get(key, r=r)
    except ZkvError as error:
        _fail_with(error)
    if value is None:
        click.echo(f"key not found: {key}", err=True)
        sys.exit(EXIT_NOT_FOUND)
    if isinstance(value, bytes):
        sys.stdout.buffer.write(value + b"\n")
    else:
        click.echo(value)


@client.command("delete")
@click.argument("key")
@click.option("--w", type=click.IntRange(1, 15), default=None, help="Replicas that must acknowledge [default: 2].")
@click.pass_obj
def client_delete(obj: _ClientContext, key, w) -> None:
    """Delete KEY (a tombstone replicated like any write)."""
    from zkv import ZkvError
    try:
        obj.client().delete(key, w=w)
    except ZkvError as error:
        _fail_with(error)
    click.echo("OK")


def _inspect(obj: _ClientContext, what: str, node: str | None) -> dict:
    from zkv import ZkvError
    try:
        return obj.client().inspect(what, node=node)
    except ZkvError as error:
        _fail_with(error)


@client.command("stats")
@click.option("--node", default=None, help="HOST:PORT of the node to ask [default: the first of --nodes].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def client_stats(obj: _ClientContext, node, as_json) -> None:
    """A node's counters: keys held, partitions, operations, handoff progress."""
    from zkv.tables import format_stats
    data = _inspect(obj, "stats", node)
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str) if as_json else format_stats(data))


@client.command("cluster")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def client_cluster(obj: _ClientContext, as_json) -> None:
    """Members: id, address, state, incarnation, partitions held (primary/replica/pending)."""
    from zkv.tables import format_cluster
    data = _inspect(obj, "cluster", None)
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else format_cluster(data))


@client.command("partitions")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def client_partitions(obj: _ClientContext, as_json) -> None:
    """The partition map: primary, replicas, pending owners and phase of every partition."""
    from zkv.tables import format_partitions
    data = _inspect(obj, "partitions", None)
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else format_partitions(data))


def _register_commands() -> None:
    """Commands that live in their own modules (imported lazily by click only when run)."""
    from zkv.bench.cli import bench_command
    from zkv.demo import demo_command
    from zkv.loaddump import dump_command, load_command
    from zkv.shell import shell_command

    main.add_command(shell_command, "shell")
    main.add_command(bench_command, "bench")
    main.add_command(demo_command, "demo")
    client.add_command(load_command, "load")
    client.add_command(dump_command, "dump")


_register_commands()


if __name__ == "__main__":
    main()

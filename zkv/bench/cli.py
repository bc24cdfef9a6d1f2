"""``zkv bench``: measure a zkv cluster (running, or started here) and, optionally, the ceiling.

This module owns the command line of the benchmark: its options and their
checks, the processes it starts (node processes through
``zkv.localcluster``, ceiling echo servers through ``zkv.bench.ceiling``), the
progress bars and the output (a table, or one JSON document with ``--json``).
What runs and in which order is ``zkv.bench.session``; how one workload issues
and times its operations is ``zkv.bench.workload``.

Everything started here is stopped here, on every way out: normal end,
errors, Ctrl-C and SIGTERM (turned into the same interruption as Ctrl-C, so
the same clean-up runs). An interrupted run prints the rows it completed and
exits with 130.

``zkv.cli`` imports this module on every ``zkv`` invocation, so the heavy
imports (zmq, tqdm, hdrh, the client) happen inside the command.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import shutil
import signal
import sys
import tempfile

import click

# Bounds of the options. They mirror the limits in zkv.bench.workload, which
# checks them again when a plan is built (that module is not imported here).
WORKLOAD_CHOICES = ("set", "get", "mixed")
WORKLOADS_DEFAULT = ("set", "get")
START_NODES_DEFAULT = 3
START_NODES_MAX = 32
KEY_COUNT_DEFAULT = 100_000
KEY_COUNT_MAX = 2_000_000
VALUE_BYTES_DEFAULT = 100
VALUE_BYTES_MAX = 4 * 1_048_576
QUORUM_MAX = 15
CONCURRENCY_PIPELINED_DEFAULT = 128  # the ceiling's pipelined window
BATCHES_IN_FLIGHT_DEFAULT = 16  # the ceiling's batched window
CONCURRENCY_MAX = 100_000
BATCH_OPS_MAX = 10_000
DURATION_S_DEFAULT = 10.0
DURATION_S_MAX = 3600.0  # also the bound of a run given only --ops
OPS_MAX_LIMIT = 1_000_000_000
WARMUP_S_DEFAULT = 1.0
RATE_OPS_PER_S_MAX = 10_000_000.0
REPEAT_MAX = 100
TIMEOUT_S_DEFAULT = 5.0
CONNECT_TIMEOUT_S = 10.0

EXIT_FAILED = 1
EXIT_CLUSTER = 3
EXIT_INTERRUPTED = 130


class _Interrupted(KeyboardInterrupt):
    """SIGTERM, raised as an interruption so that every ``finally`` runs."""


def _on_sigterm(signum, frame) -> None:
    raise _Interrupted()


@click.command("bench", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--cluster", "cluster_nodes", default=None, metavar="HOST:PORT,...",
              help="Benchmark a running cluster through these node(s); the rest is discovered.")
@click.option("--start", "start_nodes", type=click.IntRange(1, START_NODES_MAX), default=None, metavar="N",
              help=f"Start N nodes here for the run and stop them after [default: {START_NODES_DEFAULT} "
                   "unless --cluster is given].")
@click.option("--memory", is_flag=True, help="With --start: memory nodes [default: durable (LMDB) nodes].")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="With --start: where the nodes' data and logs go (a new folder inside) [default: the temp dir].")
@click.option("--keep-data", is_flag=True, help="With --start: keep the nodes' data and logs after the run.")
@click.option("--workload", "workload_names", multiple=True, type=click.Choice(WORKLOAD_CHOICES),
              help="set, get or mixed; repeatable, run in the order given [default: set, get].")
@click.option("--read-ratio", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="Fraction of gets in the mixed workload.")
@click.option("--keys", "key_count", type=click.IntRange(1, KEY_COUNT_MAX), default=KEY_COUNT_DEFAULT,
              show_default=True, help="Key space: keys are drawn uniformly from this many.")
@click.option("--value-bytes", type=click.IntRange(0, VALUE_BYTES_MAX), default=VALUE_BYTES_DEFAULT,
              show_default=True, help="Size of each value written.")
@click.option("--w", type=click.IntRange(1, QUORUM_MAX), default=2, show_default=True,
              help="Write quorum: replicas that must acknowledge a set.")
@click.option("--r", type=click.IntRange(1, QUORUM_MAX), default=2, show_default=True,
              help="Read quorum: replicas a get waits for.")
@click.option("--concurrency", type=click.IntRange(1, CONCURRENCY_MAX), default=None,
              help="Operations in flight; 1 uses the synchronous API, one op at a time "
                   f"[default: {CONCURRENCY_PIPELINED_DEFAULT}, or {BATCHES_IN_FLIGHT_DEFAULT} x --batch].")
@click.option("--batch", type=click.IntRange(0, BATCH_OPS_MAX), default=0, show_default=True,
              help="Operations per mset/mget call (batched mode; ceil(concurrency / batch) calls in flight); "
                   "0 = one future per operation.")
@click.option("--duration", "duration_s", type=click.FloatRange(0, DURATION_S_MAX, min_open=True), default=None,
              help=f"Seconds per run [default: {DURATION_S_DEFAULT:g}; with --ops only: at most {DURATION_S_MAX:g}]. "
                   "With --ops too, the run ends at whichever comes first.")
@click.option("--ops", "ops_max", type=click.IntRange(1, OPS_MAX_LIMIT), default=None,
              help="Operations per run (counting failed ones).")
@click.option("--warmup", "warmup_s", type=click.FloatRange(0, DURATION_S_MAX), default=WARMUP_S_DEFAULT,
              show_default=True, help="Seconds of unrecorded load before each run.")
@click.option("--rate", "rate_ops_per_s", type=click.FloatRange(0, RATE_OPS_PER_S_MAX, min_open=True),
              default=None, help="Open loop: start operations at this rate (ops/s); latency counts from each "
                                 "operation's scheduled start [default: closed loop].")
@click.option("--prefill/--no-prefill", default=True, show_default=True,
              help="Write the whole key space once (mset) before the first workload that reads.")
@click.option("--ceiling", is_flag=True,
              help="Also run the raw pyzmq quorum echo in the matching shape after each run and show zkv as a "
                   "fraction of it (the 'vs ceiling' column).")
@click.option("--repeat", type=click.IntRange(1, REPEAT_MAX), default=1, show_default=True,
              help="Runs of each workload; each is reported, then a median row (marked *).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.01, 600), default=TIMEOUT_S_DEFAULT,
              show_default=True, help="Seconds each client call may take before it counts as an error.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the key and operation choices.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (rows, parameters, environment).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no status lines on stderr.")
def bench_command(cluster_nodes, start_nodes, memory, data_dir, keep_data, workload_names, read_ratio, key_count,
                  value_bytes, w, r, concurrency, batch, duration_s, ops_max, warmup_s, rate_ops_per_s, prefill,
                  ceiling, repeat, timeout_s, seed, as_json, quiet) -> None:
    """Benchmark zkv: sets, gets or a mix, with latency percentiles, optionally against the ceiling.

    \b
    Modes (the same three shapes as the ceiling):
      --concurrency 1            sync: one set()/get() at a time
      --concurrency C            pipelined: C set_async/get_async futures in flight
      --batch B --concurrency C  batched: ceil(C/B) mset/mget calls of B ops in flight
    \b
    Examples:
      zkv bench                                    # 3 durable nodes, set then get, 10 s each
      zkv bench --concurrency 1 --ceiling --repeat 3
      zkv bench --cluster 127.0.0.1:8080 --workload mixed --read-ratio 0.9
      zkv bench --batch 100 --concurrency 1600 --json > result.json
    """
    parameters = dict(
        cluster=cluster_nodes, start=start_nodes, memory=memory, data_dir=data_dir, keep_data=keep_data,
        workloads=list(workload_names or WORKLOADS_DEFAULT), read_ratio=read_ratio, keys=key_count,
        value_bytes=value_bytes, w=w, r=r, concurrency=concurrency, batch=batch, duration_s=duration_s,
        ops=ops_max, warmup_s=warmup_s, rate_ops_per_s=rate_ops_per_s, prefill=prefill, ceiling=ceiling,
        repeat=repeat, timeout_s=timeout_s, seed=seed)
    plans = _check_options(parameters)
    parameters["started_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    say = (lambda message: None) if quiet else (lambda message: click.echo(message, err=True))
    show_progress = not quiet and sys.stderr.isatty()
    previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        session, cluster_info, interrupted = _run(parameters, plans, say, show_progress)
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
    _print(parameters, cluster_info, session, plans, as_json, interrupted)
    if interrupted:
        click.echo("zkv bench: interrupted; the rows above are the runs that completed", err=True)
        sys.exit(EXIT_INTERRUPTED)


# -- options ----------------------------------------------------------------------------------------------

def _check_options(parameters: dict) -> list:
    """Cross-option checks (click checked each option alone) and the workload plans; exits 2 on misuse."""
    from zkv.bench.session import check_ceiling_shape
    from zkv.bench.workload import WorkloadPlan

    if parameters["cluster"] is not None and parameters["start"] is not None:
        raise click.UsageError("choose one of --cluster (a running cluster) and --start N (start one here)")
    if parameters["cluster"] is not None:
        for name in ("memory", "data_dir", "keep_data"):
            if parameters[name]:
                raise click.UsageError(f"--{name.replace('_', '-')} applies to a cluster started with --start, "
                                       "not to --cluster")
        from zkv import InvalidRequest
        from zkv.client import parse_nodes
        try:
            parameters["cluster"] = parse_nodes(parameters["cluster"])
        except InvalidRequest as error:
            raise click.BadParameter(str(error), param_hint="'--cluster'") from None
    elif parameters["start"] is None:
        parameters["start"] = START_NODES_DEFAULT
    if parameters["concurrency"] is None:
        batch = parameters["batch"]
        parameters["concurrency"] = min(batch * BATCHES_IN_FLIGHT_DEFAULT, CONCURRENCY_MAX) if batch \
            else CONCURRENCY_PIPELINED_DEFAULT
    if parameters["duration_s"] is None:
        parameters["duration_s"] = DURATION_S_MAX if parameters["ops"] is not None else DURATION_S_DEFAULT
    plans = []
    for name in parameters["workloads"]:
        try:
            plan = WorkloadPlan(
                workload=name, key_count=parameters["keys"], value_bytes=parameters["value_bytes"],
                read_ratio=parameters["read_ratio"], concurrency=parameters["concurrency"],
                batch_ops=parameters["batch"], duration_s=parameters["duration_s"],
                ops_max=parameters["ops"] or OPS_MAX_LIMIT, warmup_s=parameters["warmup_s"],
                rate_ops_per_s=parameters["rate_ops_per_s"], timeout_s=parameters["timeout_s"],
                seed=parameters["seed"])
        except ValueError as error:
            raise click.UsageError(str(error)) from None
        if parameters["ceiling"]:
            try:
                check_ceiling_shape(plan)
            except ValueError as error:
                raise click.UsageError(f"--ceiling cannot run this shape: {error}") from None
        plans.append(plan)
    return plans


# -- processes ------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _cluster_target(parameters: dict, say):
    """Yields (node addresses, cluster description); a cluster started here is stopped on the way out."""
    if parameters["cluster"] is not None:
        yield parameters["cluster"], {"started": False, "addresses": parameters["cluster"]}
        return
    from pathlib import Path

    from zkv.localcluster import Cluster

    size, memory = parameters["start"], parameters["memory"]
    if parameters["data_dir"] is not None:
        Path(parameters["data_dir"]).mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="zkv-bench-", dir=parameters["data_dir"]))
    cluster = Cluster(directory, size, memory=memory)
    try:
        say(f"starting {size} {'memory' if memory else 'durable'} node(s) in {directory}")
        try:
            cluster.start()
        except AssertionError as error:  # localcluster's "timed out waiting for ..." with the node logs
            raise click.ClickException(f"the cluster did not start: {error}") from None
        addresses = [node.address for node in cluster.nodes.values()]
        yield addresses, {"started": True, "nodes": size, "storage": "memory" if memory else "durable",
                          "addresses": addresses, "pids": [node.pid for node in cluster.nodes.values()]}
    finally:
        cluster.stop()
        if parameters["keep_data"]:
            say(f"node data and logs kept in {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


def _run(parameters: dict, plans: list, say, show_progress: bool):
    """Start what is needed, run the session, stop everything; returns (session, cluster info, interrupted)."""
    from zkv import Client, ZkvError
    from zkv.bench.ceiling import CeilingError, start_echo_servers
    from zkv.bench.session import Session
    from zkv.bench.workload import WorkloadError

    session = Session(client=None, plans=plans, w=parameters["w"], r=parameters["r"], repeat=parameters["repeat"],
                      prefill=parameters["prefill"], progress=_progress_bars if show_progress else None, say=say)
    cluster_info: dict = {}
    interrupted = False
    try:
        with contextlib.ExitStack() as stack:
            addresses, cluster_info = stack.enter_context(_cluster_target(parameters, say))
            try:
                client = Client(addresses, w=parameters["w"], r=parameters["r"], timeout=parameters["timeout_s"],
                                connect_timeout=CONNECT_TIMEOUT_S)
            except ZkvError as error:
                click.echo(f"zkv bench: cannot reach the cluster: {error}", err=True)
                sys.exit(EXIT_CLUSTER)
            stack.callback(client.close)
            config = client.config
            cluster_info.update(partitions=config.partitions, replication=config.replication,
                                members=len(config.ring))
            session.client = client
            if parameters["ceiling"]:
                say("starting the ceiling's echo servers")
                session.ceiling_servers = stack.enter_context(start_echo_servers())
            session.run()
    except KeyboardInterrupt:
        interrupted = True
    except (CeilingError, WorkloadError) as error:
        raise click.ClickException(str(error)) from None
    return session, cluster_info, interrupted


# -- output ---------------------------------------------------------------------------------------------------

class _ProgressBar:
    """A tqdm bar on stderr for one phase; ``report(done)`` moves it to ``done`` ops."""

    def __init__(self, label: str, total: int | None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=label, unit="op", unit_scale=True, file=sys.stderr, leave=False,
                         dynamic_ncols=True, mininterval=0.2, smoothing=0.3)

    def report(self, done: int) -> None:
        self._bar.update(done - self._bar.n)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc_info) -> None:
        self._bar.close()


def _progress_bars(label: str, total: int | None) -> _ProgressBar:
    return _ProgressBar(label, total)


def _shape(parameters: dict, cluster_info: dict, plans: list) -> str:
    if cluster_info.get("started"):
        target = f"{cluster_info['nodes']} {cluster_info['storage']} node(s) started by the bench"
    else:
        target = f"cluster at {','.join(parameters['cluster'] or [])}"
    if cluster_info.get("replication"):
        target += f", RF={cluster_info['replication']}, {cluster_info['partitions']} partitions"
    mode = plans[0].mode if plans else "-"
    shape = {"sync": "sync API, 1 op in flight",
             "pipelined": f"{parameters['concurrency']} futures in flight",
             "batched": f"{plans[0].calls_in_flight if plans else 0} mset/mget calls of {parameters['batch']} "
                        "ops in flight"}.get(mode, mode)
    loop = f"open loop at {parameters['rate_ops_per_s']:,.0f} ops/s" if parameters["rate_ops_per_s"] else \
        "closed loop"
    return (f"{target}; W={parameters['w']} R={parameters['r']}; {parameters['value_bytes']}-byte values, "
            f"{parameters['keys']:,} keys; {mode}: {shape}; {loop}")


def _print(parameters: dict, cluster_info: dict, session, plans: list, as_json: bool, interrupted: bool) -> None:
    from zkv.bench.report import format_table
    from zkv.bench.session import document, table_rows

    if as_json:
        click.echo(json.dumps(document(parameters, cluster_info, session, interrupted=interrupted), indent=2))
        return
    click.echo(_shape(parameters, cluster_info, plans))
    if session.prefill_outcome is not None:
        outcome = session.prefill_outcome
        click.echo(f"prefill: {outcome.ops:,} keys in {outcome.seconds:.1f} s ({outcome.errors:,} errors)")
    if session.measurements:
        click.echo(format_table(table_rows(session.measurements, parameters["repeat"])))
        if parameters["repeat"] > 1:
            click.echo("* median of the runs above, column by column (vs ceiling: median of the run ratios)")

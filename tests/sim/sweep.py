"""Run simulator seeds from the command line; a failing seed prints how to replay it.

    python -m tests.sim.sweep --seeds 1-500            # a sweep
    python -m tests.sim.sweep --seeds 42 --trace        # one seed, with every node's log
    python -m tests.sim.sweep --seeds 1-20 --nodes 50   # big clusters
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.sim.scenario import ScenarioSettings, run_scenario


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds.extend(range(int(first), int(last or first) + 1))
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1-100")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--safety-ms", type=int, default=20_000)
    parser.add_argument("--trace", action="store_true", help="print every node's log lines")
    parser.add_argument("--buggify-release-early", action="store_true",
                        help="run with a deliberately broken release rule (the checker should fail)")
    options = parser.parse_args(argv)
    settings = ScenarioSettings(nodes=options.nodes, partitions=options.partitions, safety_ms=options.safety_ms,
                                buggify_release_early=options.buggify_release_early)
    failed = 0
    started = time.monotonic()
    for seed in parse_seeds(options.seeds):
        result = run_scenario(seed, settings, trace=options.trace)
        if options.trace:
            print("\n".join(result.sim.logs))
        if not result.ok:
            failed += 1
            print(result.describe())
            print(f"replay: python -m tests.sim.sweep --seeds {seed} --nodes {options.nodes} --trace\n")
    total = len(parse_seeds(options.seeds))
    print(f"{total - failed} of {total} seeds passed in {time.monotonic() - started:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

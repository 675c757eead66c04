"""``python -m bench`` (``make bench``): run the benchmark, print its table, append it to bench/history.jsonl.

Modes: the default run; ``--profile`` (py-spy profiles of the worker, and its top costs); ``--sweep`` (memory
and throughput of the monitor core against the number of models and the label horizon). The exit code is 1
only when a program failed, never because of a figure.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import NoReturn

from rich.console import Console

from bench.config import BenchConfig
from bench.profile import profile
from bench.report import show
from bench.results import HISTORY, append
from bench.run import benchmark
from bench.sweep import sweep


def parse(argv: list[str]) -> argparse.Namespace:
    defaults = BenchConfig()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=defaults.events, help="predictions + feedback in the stream")
    parser.add_argument("--envelope", type=int, default=defaults.envelope, help="events per envelope, at most")
    parser.add_argument("--latency-seconds", type=float, default=60.0, help="wall time of the latency run")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--profile", action="store_true", help="profile the worker with py-spy instead")
    mode.add_argument("--sweep", action="store_true", help="sweep models and label horizon on the monitor core")
    return parser.parse_args(argv)


def _interrupted(_signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    arguments = parse(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _interrupted)  # clean up as after Ctrl-C
    config = BenchConfig(events=arguments.events, envelope=arguments.envelope)
    console = Console(width=None if sys.stdout.isatty() else 150)  # a log or a pipe still gets whole tables
    if arguments.profile:
        return profile(config, console)
    if arguments.sweep:
        return sweep(config, console)
    results = benchmark(config, arguments.latency_seconds, console)
    show(results, console)
    append(results.history_line())
    console.print(f"Appended to {HISTORY}")
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""The latency run's producer: the benchmark stream sent in envelopes at a steady rate, reporting as it goes
which event time its predictions have reached at which wall time, so the harness knows when each window closed.

Run by the harness as ``python -m bench.paced_producer SPEC``; SPEC (JSON) gives ``settings`` (load_settings
overrides), ``config`` (a :class:`BenchConfig` as a dict) and ``rate`` (events per second).
"""

from __future__ import annotations

import json
import sys
import time

from bench.config import BenchConfig
from bench.measure import report
from driftline.settings import load_settings
from driftline.simulation.simulator import Simulation
from driftline.simulation.traffic import Progress, send


def main() -> None:
    spec = json.loads(sys.argv[1])
    config = BenchConfig(**spec["config"])

    def sent(progress: Progress) -> None:
        # windows close on prediction time: once the last prediction is out, the labels still due follow with
        # their own later times, which close nothing
        closing = progress.predictions < config.predictions
        report(progress=progress.events, wall=time.time(), time_ms=progress.time_ms if closing else None)

    sending = send(
        Simulation(config.simulation()),
        load_settings(**spec["settings"]),
        fast=True,
        envelopes=True,
        max_batch=config.envelope,
        rate=spec["rate"],
        progress=sent,
    )
    report(done=True, events=sending.predictions + sending.feedback, seconds=sending.seconds, wall=time.time())


if __name__ == "__main__":
    main()

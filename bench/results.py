"""What one benchmark run found: the measurements, the ratios and performance targets, and the history line.

Targets are reported, never asserted: a run that misses one still succeeds.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import confluent_kafka
import psutil

from bench.config import BenchConfig, Shape
from bench.latency import Latency
from bench.measure import Measurement
from bench.stream import Stream

HISTORY = Path(__file__).with_name("history.jsonl")
PROGRAMS = {
    "a": "bare confluent-kafka consumer + orjson",
    "b": "bare Faust agent + orjson",
    "c": "monitor core on confluent-kafka",
    "d": "driftline worker",
    "e": "sink into ClickHouse (chDB)",
}
GIB = 2**30


@dataclass(frozen=True)
class Start:
    """What a run started from: the commit checked out and the load on the machine."""

    commit: str = field(default_factory=lambda: _git("rev-parse", "HEAD"))
    load: tuple[float, ...] = field(default_factory=os.getloadavg)


@dataclass(frozen=True)
class Target:
    """One performance target and where this run stands."""

    name: str
    goal: str
    value: float | None
    met: bool | None  # None: not measured in this run


@dataclass
class Results:
    """Everything a run measured; filled in as the programs finish."""

    config: BenchConfig
    latency_s: float
    streams: dict[Shape, Stream] = field(default_factory=dict)
    runs: dict[tuple[str, Shape], Measurement] = field(default_factory=dict)
    latency: Latency | None = None
    failures: list[str] = field(default_factory=list)
    start: Start = field(default_factory=Start)

    def rate(self, program: str, shape: Shape) -> float | None:
        """Events per second of a program on a shape (None when it did not run)."""
        run = self.runs.get((program, shape))
        return run.events_per_s if run else None

    def ratio(self, shape: Shape, numerator: str, denominator: str) -> float | None:
        """One program's rate over another's on the same stream."""
        top, bottom = self.rate(numerator, shape), self.rate(denominator, shape)
        return top / bottom if top and bottom else None

    def sink_rows_per_s(self) -> float | None:
        """Rows the sink stored per second (every table)."""
        run = self.runs.get(("e", "envelopes"))
        return run.extra["rows"] / run.seconds if run and run.seconds else None

    def targets(self) -> list[Target]:
        """The performance targets against this run."""
        worker_rss = [run.peak_rss_bytes / GIB for (p, _s), run in self.runs.items() if p == "d"]
        latency = self.latency.window_p99_s if self.latency else None
        if latency is None and self.latency is not None and self.latency.windows_missing:
            latency = math.inf  # p99 falls on a window not stored in time

        def target(name: str, goal: str, value: float | None, met: bool) -> Target:
            return Target(name, goal, value, met if value is not None else None)

        envelopes = self.rate("d", "envelopes")
        per_a, per_c = self.ratio("envelopes", "d", "a"), self.ratio("envelopes", "d", "c")
        per_b = self.ratio("single", "d", "b")
        peak = max(worker_rss, default=None)
        return [
            target("worker, envelopes", ">= 50,000 events/s", envelopes, (envelopes or 0) >= 50_000),
            target("worker / bare consumer, envelopes", ">= 0.5", per_a, (per_a or 0) >= 0.5),
            target("worker / monitor core, envelopes", ">= 0.9", per_c, (per_c or 0) >= 0.9),
            target("worker / bare Faust, one event per message", ">= 0.8", per_b, (per_b or 0) >= 0.8),
            target("window close -> ClickHouse row, p99", "< 2 s", latency, (latency or 0) < 2),
            target("worker peak memory, 100 models", "< 1 GiB", peak, (peak or 0) < 1),
        ]

    def history_line(self) -> dict[str, Any]:
        """The JSON line appended to bench/history.jsonl."""
        return {
            **provenance(self.start),
            "parameters": {**self.config.as_dict(), "latency_s": self.latency_s},
            "streams": {
                shape: {"events": s.events, "messages": s.messages, "malformed": s.malformed}
                for shape, s in self.streams.items()
            },
            "runs": {f"{p}:{shape}": run.as_dict() for (p, shape), run in self.runs.items()},
            "ratios": {
                shape: {f"d/{p}": _round(self.ratio(shape, "d", p), 3) for p in "abc"} for shape in self.streams
            },
            "sink_rows_per_s": _round(self.sink_rows_per_s(), 0),
            "latency": self.latency.as_dict() if self.latency else None,
            "targets": {t.name: t.met for t in self.targets()},
            "failures": self.failures,
        }


def provenance(start: Start) -> dict[str, Any]:
    """Date, commit, machine and load average (other engineers share the cores): what a figure is read with.
    ``commit_at_end`` appears when the branch moved while the run went on."""
    head = _git("rev-parse", "HEAD")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": start.commit,
        **({"commit_at_end": head} if head != start.commit else {}),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "machine": machine(),
        "load_average": {"start": start.load, "end": os.getloadavg()},
    }


def machine() -> dict[str, Any]:
    """The facts a figure depends on: cores, memory, CPU model, Python and library versions."""
    from driftline.settings import BrokerSettings

    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "kafka": BrokerSettings().kafka_version,
        "librdkafka": confluent_kafka.libversion()[0],
        **{name: version(name) for name in ("confluent-kafka", "faust-streaming", "aiokafka", "chdb", "msgspec")},
    }


def append(line: dict[str, Any], path: Path = HISTORY) -> None:
    """Append one run to the history file."""
    with path.open("a") as history:
        history.write(json.dumps(line, sort_keys=False) + "\n")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for text in info:
                if text.startswith("model name"):
                    return text.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=HISTORY.parent, capture_output=True, text=True, check=False)
    return result.stdout.strip()


def _round(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None

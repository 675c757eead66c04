"""What is measured of each program, and how: wall time and CPU time from its first message to its last,
peak resident memory of its process over its whole life.

A program run by the harness (:mod:`bench.children`) measures itself with :class:`Meter` and reports on stdout,
one JSON line per report, each starting with :data:`MARK`; a program the harness cannot change (``driftline
worker``) is measured from outside with :class:`ProcessMeter`.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

MARK = "BENCH "
REPORT_EVERY_S = 0.25


@dataclass(frozen=True)
class Measurement:
    """One program's run over one stream."""

    events: int  # predictions + feedback handled
    messages: int
    seconds: float  # first message to last
    cpu_s: float  # CPU time of the process (all threads) over the same interval
    peak_rss_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        """Throughput in predictions + feedback per second."""
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_s_per_million(self) -> float:
        """CPU seconds per million events."""
        return self.cpu_s / self.events * 1e6 if self.events else 0.0

    def as_dict(self) -> dict[str, Any]:
        """For the history line: the measured values and the derived rates."""
        return {
            **asdict(self),
            "events_per_s": round(self.events_per_s),
            "cpu_s_per_million": round(self.cpu_s_per_million, 2),
            "peak_rss_mib": round(self.peak_rss_bytes / 2**20),
        }


def report(**line: Any) -> None:
    """Send one report line to the harness."""
    sys.stdout.write(MARK + json.dumps(line) + "\n")
    sys.stdout.flush()


class Meter:
    """A program's own stopwatch: :meth:`start` at its first message, :meth:`tick` as it goes, :meth:`finish`
    after its last; progress and the result go to the harness as report lines."""

    def __init__(self) -> None:
        self.started_at = 0.0
        self.cpu_at_start = 0.0
        self.last_report = 0.0

    @property
    def running(self) -> bool:
        """Whether the first message has come."""
        return self.started_at > 0

    def start(self) -> None:
        """Mark the first message."""
        self.started_at = time.perf_counter()
        self.cpu_at_start = time.process_time()
        self.last_report = self.started_at

    def tick(self, events: int) -> None:
        """Report progress now and then (cheap to call per batch)."""
        now = time.perf_counter()
        if now - self.last_report >= REPORT_EVERY_S:
            self.last_report = now
            report(progress=events)

    def finish(self, events: int, messages: int, seconds: float | None = None, **extra: Any) -> Measurement:
        """Mark the end (or take ``seconds`` as the time measured) and report the measurement."""
        measurement = Measurement(
            events=events,
            messages=messages,
            seconds=time.perf_counter() - self.started_at if seconds is None else seconds,
            cpu_s=time.process_time() - self.cpu_at_start,
            peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            extra=extra,
        )
        report(result=asdict(measurement))
        return measurement


class ProcessMeter:
    """Another process's CPU time and peak memory, read from outside (psutil and /proc)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.pid = pid

    def cpu_s(self) -> float:
        """User plus system CPU seconds of the process so far, all threads."""
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def peak_rss_bytes(self) -> int:
        """The process's high-water mark of resident memory (VmHWM)."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0

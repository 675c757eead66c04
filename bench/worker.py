"""(d) ``driftline worker``, every monitor on, measured from outside: its ``/metrics`` endpoint says how far it
is (``driftline_events_in``, ``driftline_consumer_lag``, ``driftline_checkpoint_age_seconds``), psutil and /proc
say what it costs.

The worker is not changed for the benchmark. Its first and last message are placed half-way between the
scrape that saw them and the one before (scrapes every :data:`SCRAPE_S`), and its CPU time is read at those
scrapes, so its start-up (imports, group join) is left out as it is for the other programs.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.measure import Measurement, ProcessMeter
from bench.processes import STOP_TIMEOUT_S, RunError, start, stop

SCRAPE_S = 0.2
CHECKPOINT_WAIT_S = 600.0  # checkpoints are spaced by ten times their own duration: minutes for a large state
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Scrape:
    """What one look at ``/metrics`` showed, and the worker's CPU time then."""

    at: float
    cpu_s: float
    events: int
    lag: int | None  # None until partitions are assigned
    checkpoint_age_s: float


def scrape(port: int) -> tuple[int, int | None, float] | None:
    """Events in, total consumer lag and checkpoint age from the worker's ``/metrics``; None while it does not
    answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    events, lag, age = 0, None, float("inf")
    for family in text_string_to_metric_families(text):
        if family.name == "driftline_events_in":
            events = sum(int(sample.value) for sample in family.samples if sample.name.endswith("_total"))
        elif family.name == "driftline_consumer_lag" and family.samples:
            lag = sum(int(sample.value) for sample in family.samples)
        elif family.name == "driftline_checkpoint_age_seconds":
            age = family.samples[0].value
    return events, lag, age


def measure_worker(
    env: dict[str, str],
    workdir: Path,
    web_port: int,
    events: int,
    progress: Callable[[int], None],
    *,
    profile_to: Path | None = None,
    stall_s: float = 120.0,
) -> Measurement:
    """Run ``driftline worker`` until it has read ``events`` events (lag 0) and checkpointed them; stop it.

    Its time runs from its first message to its last, plus its last checkpoint, whose CPU time stands for its
    duration: the wait before it (checkpoints are spaced by ``monitor.checkpoint_s`` and by their own cost) is
    left out, as (c) checkpoints at once. That checkpoint emits the windows the stream closed and the worker
    had not emitted yet, so their cost counts. With ``profile_to``, py-spy samples the worker (speedscope
    format) from start to stop. Raises :class:`RunError` when it exits early or makes no progress for
    ``stall_s`` seconds (nor checkpoints within :data:`CHECKPOINT_WAIT_S` after reading everything).
    """
    worker = [str(BIN / "driftline"), "worker", "--loglevel", "warn"]
    profiler = [str(BIN / "py-spy"), "record", "--format", "speedscope", "--rate", "100", "-o", str(profile_to), "--"]
    log = workdir / "worker.log"
    process = start([*profiler, *worker] if profile_to else worker, log, env, cwd=workdir)
    try:
        meter = ProcessMeter(_worker_pid(process) if profile_to else process.pid)
        previous: Scrape | None = None
        first: tuple[float, float] | None = None  # (time, CPU s) of the first message
        read: tuple[float, Scrape] | None = None  # (time of the last message, the scrape that saw it)
        progressed = time.monotonic()
        while True:
            if process.poll() is not None:
                raise RunError(f"driftline worker exited with code {process.returncode} (log: {log})")
            time.sleep(SCRAPE_S)
            seen = scrape(web_port)
            if seen is None:
                continue
            now = Scrape(time.perf_counter(), meter.cpu_s(), *seen)
            progress(now.events)
            since = (previous.at + now.at) / 2 if previous else now.at
            if first is None and now.events > 0:
                first = (since, now.cpu_s)
            if read is None and first is not None and now.events >= events and now.lag == 0:
                read = (since, now)
            if read is not None and first is not None and now.checkpoint_age_s < now.at - read[1].at:
                # a scrape is served between agent steps, never during a checkpoint: this one began after
                # everything was read
                return Measurement(
                    events=now.events,
                    messages=0,
                    seconds=read[0] - first[0] + (now.cpu_s - read[1].cpu_s),
                    cpu_s=now.cpu_s - first[1],
                    peak_rss_bytes=meter.peak_rss_bytes(),
                    extra={"final_checkpoint_wait_s": round(now.at - read[1].at, 1)},
                )
            if previous is None or now.events > previous.events:
                progressed = time.monotonic()
            elif read is not None and now.at - read[1].at > CHECKPOINT_WAIT_S:
                raise RunError(f"driftline worker did not checkpoint in {CHECKPOINT_WAIT_S:.0f} s (log: {log})")
            elif read is None and time.monotonic() - progressed > stall_s:
                raise RunError(f"driftline worker made no progress for {stall_s:.0f} s (log: {log})")
            previous = now
    finally:
        _stop_worker(process, profiled=profile_to is not None)


def _stop_worker(process: subprocess.Popen[bytes], *, profiled: bool) -> None:
    """Stop the worker; under py-spy, stop the worker first so that py-spy writes its profile and exits."""
    if profiled:
        with suppress(psutil.NoSuchProcess):
            for child in psutil.Process(process.pid).children():
                child.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT_S)
    stop(process)


def _worker_pid(profiler: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    """The pid of the worker that py-spy started."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        children = psutil.Process(profiler.pid).children()
        if children:
            return int(children[0].pid)
        time.sleep(0.05)
    raise RunError("py-spy did not start the worker")

"""``driftline worker``, ``sink`` and ``run``: the long-running processes, each until Ctrl-C or SIGTERM."""

from __future__ import annotations

from typing import TYPE_CHECKING

from driftline.cli.base import LogLevel, say, settings

if TYPE_CHECKING:
    from driftline.sinks.sink import SinkStats
    from driftline.streams.worker.stages import WorkerStages


def worker(loglevel: LogLevel = "info") -> None:
    """Run the stream-processing worker (Faust) until stopped with Ctrl-C or SIGTERM, then print what it did."""
    from driftline.pipeline import run_worker

    run_worker(settings(), loglevel, on_stop=lambda stages: say(_worker_stopped(stages)))


def sink() -> None:
    """Load every driftline topic from Kafka into ClickHouse until Ctrl-C or SIGTERM; Prometheus metrics on
    DRIFTLINE_SINK_METRICS_PORT (/metrics)."""
    import logging
    import signal

    from driftline.sinks.sink import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stopping: list[int] = []

    def handle_signals() -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda number, _frame: stopping.append(number))

    say(_sink_stopped(serve(settings(), lambda: bool(stopping), say, on_open=handle_signals)))


def _sink_stopped(stats: SinkStats) -> str:
    """The line ``driftline sink`` and ``driftline run`` end with."""
    letters = dict(stats.dead_letters_by_reason)
    return f"Sink stopped: {stats.messages} messages, rows {dict(stats.rows)}, dead letters {letters}"


def run_all(loglevel: LogLevel = "info") -> None:
    """Run the worker and the sink in one process (the laptop default) until Ctrl-C or SIGTERM, then print the
    worker's and the sink's stop summaries. An error of the sink is raised once the worker has stopped."""
    import threading

    from driftline.pipeline import run_worker
    from driftline.sinks.sink import serve

    resolved = settings()
    stop, opened = threading.Event(), threading.Event()
    failures: list[BaseException] = []
    stopped: list[SinkStats] = []

    def sink_thread() -> None:
        try:
            stopped.append(serve(resolved, stop.is_set, say, on_open=opened.set))
        except BaseException as error:  # reported after the worker stops
            failures.append(error)
            opened.set()

    thread = threading.Thread(target=sink_thread, name="driftline-sink")
    thread.start()
    opened.wait(120)
    try:
        if not failures:
            run_worker(resolved, loglevel, on_stop=lambda stages: say(_worker_stopped(stages)))
    finally:
        stop.set()
        thread.join()
        if stopped:
            say(_sink_stopped(stopped[0]))
        if failures:
            raise failures[0]  # also when the worker stopped cleanly: its SystemExit would hide the sink's error


def _worker_stopped(stages: WorkerStages) -> str:
    """The worker's stop summary: what its stages counted in this run."""
    counts = stages.counts
    letters = {name.split(":", 1)[1]: n for name, n in sorted(counts.items()) if name.startswith("dead_letter:")}
    return (
        f"Worker stopped: {counts['predictions']} predictions, {counts['feedback']} feedback, "
        f"{counts['windows_emitted']} window results, {counts['alarms']} alarms, {counts['triggers']} triggers, "
        f"dead letters {letters}"
    )

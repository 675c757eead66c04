"""One benchmark run: a private broker, the stream in both shapes, programs (a)-(e) one after another from the
same offsets (each in its own process, with its own consumer group), then the latency run.

:class:`Session` holds what every mode shares (a temporary directory, the broker, the progress bar) and runs
one program on one stream; :func:`benchmark` is the default run (``make bench``).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.broker import private_broker
from bench.config import BenchConfig, Names, Shape, environment, overrides
from bench.latency import measure_latency
from bench.measure import Measurement
from bench.processes import RunError, measure, stop_all
from bench.results import PROGRAMS, Results
from bench.stream import Stream, end_offsets, produce
from bench.worker import measure_worker
from driftline.devtools.local_broker import free_port
from driftline.kafka.topics import create_topics
from driftline.schemas.topics import ALL_TOPICS, DEAD_LETTERS
from driftline.settings import load_settings

RUN_ORDER: tuple[Shape, ...] = ("envelopes", "single")
PLAIN_PROGRESS_S = 10.0  # without a terminal, a line of progress this often


class Session:
    """A temporary directory, a private broker and a progress bar; programs run against them."""

    def __init__(self, home: Path, bootstrap: str, bar: Progress) -> None:
        self.home, self.bootstrap, self.bar = home, bootstrap, bar
        self.keep_logs = False
        self._runs = 0

    def names(self, prefix: str, program: str) -> Names:
        """Where one run of ``program`` lives: topics under ``prefix``, and its own directory, app id (consumer
        group, checkpoint) and ports, never shared with another run."""
        self._runs += 1
        tag = f"{prefix.strip('.').replace('.', '-')}-{program}-{self._runs}"
        return Names(self.bootstrap, prefix, self.home / tag, tag, free_port(), free_port(), free_port())

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A line of the progress bar for the block, marked failed if the block raises; yields its update."""
        task = self.bar.add_task(description, total=total)
        try:
            yield lambda done: self.bar.update(task, completed=min(done, total) if total else done)
        except BaseException:
            self.bar.update(task, description=f"{description} [red]failed[/red]")
            raise
        finally:
            self.bar.stop_task(task)

    def produce(self, config: BenchConfig, shape: Shape, tag: str = "") -> Stream:
        """Send the stream of ``config`` in ``shape`` under the prefix ``bench.<shape><tag>.``."""
        names = self.names(f"bench.{shape}{tag}.", "producer")
        with self.task(f"producing the stream ({shape}{tag})", config.events) as progress:
            stream = produce(load_settings(**overrides(config, names)), config, shape, progress)
            progress(config.events)
        return stream

    def run(self, program: str, config: BenchConfig, stream: Stream, profile_to: Path | None = None) -> Measurement:
        """Run one program over the whole of ``stream``; raise :class:`RunError` if it fails or misses events.
        ``profile_to``: run the worker (d) under py-spy, writing its profile there."""
        with self.task(f"({program}) {PROGRAMS[program]} ({stream.shape})", stream.events) as progress:
            measured = self._run(program, config, stream, progress, profile_to)
        if program in "cde" and measured.events != stream.events:
            raise RunError(
                f"({program}) on {stream.shape} handled {measured.events} events of {stream.events} ({measured.extra})"
            )
        if program in "abce" and measured.messages < stream.messages:
            raise RunError(f"({program}) on {stream.shape} read {measured.messages} messages of {stream.messages}")
        messages = measured.messages or stream.messages  # (d) reports no count: its lag was 0
        return replace(
            measured, events=stream.events, messages=messages, extra={**measured.extra, "counted": measured.events}
        )

    def _run(
        self,
        program: str,
        config: BenchConfig,
        stream: Stream,
        progress: Callable[[int], None],
        profile_to: Path | None,
    ) -> Measurement:
        """Start ``program`` in its own place and return what it measured."""
        names = self.names(stream.prefix, program)
        settings = overrides(config, names)
        spec: dict[str, Any]
        log = self.home / f"{names.app_id}.log"
        if program == "a":
            spec = {"bootstrap": self.bootstrap, "group": names.app_id, "ends": stream.ends}
            return measure("bench.bare_consumer", spec, log, progress)
        if program == "b":
            return measure("bench.bare_faust", {"settings": settings, "ends": stream.ends}, log, progress)
        if program == "c":
            outputs = f"{names.prefix}{names.app_id}."
            create_topics(load_settings(**{**settings, "kafka": {**settings["kafka"], "topic_prefix": outputs}}))
            spec = {
                "settings": settings,
                "ends": stream.ends,
                "group": names.app_id,
                "outputs": outputs,
                "labels_first": config.labels_first,
            }
            return measure("bench.core", spec, log, progress)
        if program == "d":
            names.data_dir.mkdir(parents=True, exist_ok=True)
            variables = environment(settings)
            return measure_worker(
                variables, names.data_dir, names.web_port, stream.events, progress, profile_to=profile_to
            )
        read = [names.prefix + t.name for t in ALL_TOPICS if t.stored and t is not DEAD_LETTERS]
        spec = {
            "settings": settings,
            "ends": end_offsets(load_settings(**settings), read),
            "dead_letters": stream.malformed,
        }
        return measure("bench.sink", spec, log, progress)


@contextmanager
def plain_progress(bar: Progress, console: Console, every_s: float = PLAIN_PROGRESS_S) -> Iterator[None]:
    """Where rich draws no bar (a log, a pipe): a line per running task of ``bar`` every ``every_s``."""
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(every_s):
            for task in bar.tasks:
                if task.started and task.stop_time is None:
                    done = f"{task.completed:,.0f}" + (f" of {task.total:,.0f}" if task.total else "")
                    console.print(f"  {task.description}: {done}, {task.elapsed or 0:.0f} s", highlight=False)

    thread = threading.Thread(target=report, name="bench-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def session(console: Console) -> Iterator[Session]:
    """A session that cleans up after itself: its processes, the broker, and its directory unless a program
    failed (then the logs stay, and their place is printed)."""
    home = Path(tempfile.mkdtemp(prefix="driftline-bench-"))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    current: Session | None = None
    try:
        with ExitStack() as stack:
            bar = stack.enter_context(Progress(*columns, console=console))
            if not console.is_terminal:
                stack.enter_context(plain_progress(bar, console))
            bootstrap = stack.enter_context(private_broker(home / "kafka", console.print))
            stack.callback(stop_all)
            current = Session(home, bootstrap, bar)
            yield current
    except Exception:
        if current is not None:
            current.keep_logs = True
        raise
    finally:
        if current is not None and current.keep_logs:
            shutil.rmtree(home / "kafka" / "kafka" / "data", ignore_errors=True)  # the stream itself: gigabytes
            console.print(f"Logs kept in {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def benchmark(config: BenchConfig, latency_s: float, console: Console) -> Results:
    """The default run: (a)-(d) on both shapes, (e) on envelopes, then the latency run."""
    results = Results(config, latency_s)
    with session(console) as run:
        for shape in RUN_ORDER:
            stream = results.streams[shape] = run.produce(config, shape)
            for program in "abcd":
                _attempt(results, run, program, config, stream)
        _attempt(results, run, "e", config, results.streams["envelopes"])
        worker, sink = results.rate("d", "envelopes"), results.rate("e", "envelopes")
        if worker is None or sink is None:
            results.failures.append("latency run skipped: the worker's or the sink's rate was not measured")
        else:
            try:
                with run.task("latency: driftline run at half its sustainable rate", None) as progress:
                    results.latency = measure_latency(
                        config, run.names("bench.latency.", "run"), latency_rate(worker, sink), latency_s, progress
                    )
            except RunError as failure:
                results.failures.append(f"latency run: {failure}")
        run.keep_logs = bool(results.failures)
    return results


def latency_rate(worker: float, sink: float) -> float:
    """The latency run's producer rate: half of what worker and sink sustain in one process, one after the other
    (1 / (1/worker + 1/sink)), so that latencies measure the pipeline's delays, not a backlog that grows."""
    return 0.5 / (1 / worker + 1 / sink)


def _attempt(results: Results, run: Session, program: str, config: BenchConfig, stream: Stream) -> None:
    try:
        results.runs[(program, stream.shape)] = run.run(program, config, stream)
    except RunError as failure:
        results.failures.append(str(failure))

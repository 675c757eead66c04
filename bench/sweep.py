"""``--sweep``: throughput, CPU per event and peak memory of the monitor core (c) on envelopes, against the window
size, the number of models, the label horizon, and labels read far ahead of their predictions.

- windows: one stream spanning ``WINDOW_SPAN_S`` (four days) of event time over ``WINDOW_MODELS`` models, with
  5-minute, 1-hour and 1-day windows, each with a label horizon of three windows at least (the base 30
  minutes, 3 hours, 3 days): a large window must cost no more per event than a small one. (A window costs
  its bins once, whatever it holds: spread over 100 models, four days of a short stream leave about one
  prediction per 5-minute window, which measures that fixed cost alone.)
- models and horizons: the default stream (100 models, 30-minute horizon) spread over 10, 100 and 1,000 models,
  and with horizons of 5 and 120 minutes;
- labels first: the default stream, with (c) reading every feedback message before any prediction, so every
  label waits for its prediction in the join.

Traffic stays the same (events); every point builds references from a model's first 200 predictions (not
1,000), so that with 1,000 models (about 550 predictions each in a million events) drift is still computed.
Each point appends nothing by itself: the sweep appends one history line with ``"mode": "sweep"``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.config import BenchConfig
from bench.measure import Measurement
from bench.processes import RunError
from bench.results import HISTORY, Start, append, provenance
from bench.run import session

MODELS = (10, 100, 1000)
HORIZONS_S = (300.0, 7200.0)  # besides the default, measured with 100 models
WINDOWS_S = (300.0, 3600.0, 86400.0)
WINDOW_SPAN_S = 4 * 86400.0  # so that 1-day windows close and their labels come within the horizon
WINDOW_MODELS = 10
REFERENCE_FIRST_N = 200


@dataclass(frozen=True)
class Point:
    """One measurement of the sweep: the run's parameters and the stream it reads (by tag)."""

    config: BenchConfig
    stream: str

    def as_dict(self) -> dict[str, Any]:
        config = self.config
        return {
            "stream": self.stream,
            "models": config.models,
            "window_s": config.window_s,
            "horizon_s": config.horizon_s,
            "labels_first": config.labels_first,
        }


def points(config: BenchConfig) -> tuple[dict[str, BenchConfig], list[Point]]:
    """The streams (by tag) and the points of the sweep."""
    base = replace(config, reference_first_n=REFERENCE_FIRST_N)
    days = replace(base, models=WINDOW_MODELS, predictions_per_s=base.predictions / WINDOW_SPAN_S)
    streams = {f"-m{m}": replace(base, models=m) for m in MODELS} | {"-days": days}
    sweep = [Point(replace(days, window_s=w, horizon_s=max(base.horizon_s, 3 * w)), "-days") for w in WINDOWS_S]
    sweep += [Point(replace(base, models=m), f"-m{m}") for m in MODELS]
    sweep += [Point(replace(base, horizon_s=h), f"-m{base.models}") for h in HORIZONS_S]
    sweep.append(Point(replace(base, labels_first=True), f"-m{base.models}"))
    return streams, sweep


def sweep(config: BenchConfig, console: Console) -> int:
    """Run the sweep, print its table, append its history line; return 1 if a point failed."""
    start = Start()
    stream_configs, planned = points(config)
    measured: list[tuple[Point, Measurement | None]] = []
    failures = []
    with session(console) as run:
        streams = {tag: run.produce(stream, "envelopes", tag) for tag, stream in stream_configs.items()}
        for point in planned:
            try:
                measured.append((point, run.run("c", point.config, streams[point.stream])))
            except RunError as failure:
                failures.append(str(failure))
                measured.append((point, None))
        run.keep_logs = bool(failures)
    console.print(_table(config, measured))
    for line in failures:
        console.print(f"[red]failed:[/red] {line}")
    append(_history_line(stream_configs[f"-m{config.models}"], measured, failures, start))
    console.print(f"Appended to {HISTORY}")
    return 1 if failures else 0


def _duration(seconds: float) -> str:
    return (
        f"{seconds / 86400:g} d"
        if seconds >= 86400
        else f"{seconds / 3600:g} h"
        if seconds >= 3600
        else f"{seconds / 60:g} min"
    )


def _table(config: BenchConfig, measured: list[tuple[Point, Measurement | None]]) -> Table:
    table = Table(
        title=f"monitor core (c) on {config.events:,} events in envelopes: window, models, horizon, labels first",
        title_justify="left",
    )
    for column in ("stream", "window", "models", "horizon", "events/s", "CPU s per M events", "peak RSS MiB"):
        table.add_column(column, justify="right")
    table.add_column("windows emitted", justify="right")
    table.add_column("held at the end: pending predictions / windows", justify="right")
    for point, run in measured:
        cells = ["-"] * 5
        if run is not None:
            cells = [
                f"{run.events_per_s:,.0f}",
                f"{run.cpu_s_per_million:.1f}",
                f"{run.peak_rss_bytes / 2**20:,.0f}",
                f"{run.extra['windows_emitted']:,}",
                f"{run.extra['pending']:,} / {run.extra['open_windows']:,}",
            ]
        c = point.config
        stream = "4 days" if point.stream == "-days" else "default" + (", labels first" if c.labels_first else "")
        table.add_row(stream, _duration(c.window_s), f"{c.models:,}", _duration(c.horizon_s), *cells)
    return table


def _history_line(
    base: BenchConfig,
    measured: list[tuple[Point, Measurement | None]],
    failures: list[str],
    start: Start,
) -> dict[str, Any]:
    return {
        "mode": "sweep",
        **provenance(start),
        "parameters": base.as_dict(),
        "points": [{**p.as_dict(), **(run.as_dict() if run else {"failed": True})} for p, run in measured],
        "failures": failures,
    }

"""``--sweep``: throughput and peak memory of the monitor core (c) against the number of models and the label
horizon (how long pending predictions and closed windows are held for late labels), on envelopes.

Traffic stays the same (events, event-time span); only the number of models it is spread over, or the
horizon, changes. Every point builds references from a model's first 200 predictions (not 1,000), so that
with 1,000 models (about 550 predictions each in a million events) drift is still computed. Each point
appends nothing by itself: the sweep appends one history line with ``"mode": "sweep"``.
"""

from __future__ import annotations

from dataclasses import replace
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
REFERENCE_FIRST_N = 200


def sweep(config: BenchConfig, console: Console) -> int:
    """Run the sweep, print its table, append its history line; return 1 if a point failed."""
    start = Start()
    base = replace(config, reference_first_n=REFERENCE_FIRST_N)
    points = [replace(base, models=m) for m in MODELS] + [replace(base, horizon_s=h) for h in HORIZONS_S]
    measured: list[tuple[BenchConfig, Measurement | None]] = []
    failures = []
    with session(console) as run:
        streams = {m: run.produce(replace(base, models=m), "envelopes", f"-m{m}") for m in MODELS}
        for point in points:
            try:
                measured.append((point, run.run("c", point, streams[point.models])))
            except RunError as failure:
                failures.append(str(failure))
                measured.append((point, None))
        run.keep_logs = bool(failures)
    console.print(_table(config, measured))
    for line in failures:
        console.print(f"[red]failed:[/red] {line}")
    append(_history_line(base, measured, failures, start))
    console.print(f"Appended to {HISTORY}")
    return 1 if failures else 0


def _table(config: BenchConfig, measured: list[tuple[BenchConfig, Measurement | None]]) -> Table:
    table = Table(
        title=f"monitor core (c) on {config.events:,} events in envelopes: models and label horizon",
        title_justify="left",
    )
    for column in ("models", "horizon", "events/s", "CPU s per M events", "peak RSS MiB", "windows emitted"):
        table.add_column(column, justify="right")
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
        table.add_row(f"{point.models:,}", f"{point.horizon_s / 60:g} min", *cells)
    return table


def _history_line(
    base: BenchConfig,
    measured: list[tuple[BenchConfig, Measurement | None]],
    failures: list[str],
    start: Start,
) -> dict[str, Any]:
    return {
        "mode": "sweep",
        **provenance(start),
        "parameters": base.as_dict(),
        "points": [
            {"models": p.models, "horizon_s": p.horizon_s, **(run.as_dict() if run else {"failed": True})}
            for p, run in measured
        ],
        "failures": failures,
    }

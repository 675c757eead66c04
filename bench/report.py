"""The run's tables for a person: throughput per program and shape, ratios, the sink, latency and targets."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from bench.config import SHAPES
from bench.latency import ARRIVAL_TIMEOUT_S, Latency
from bench.results import PROGRAMS, Results

MIB = 2**20


def show(results: Results, console: Console) -> None:
    """Print the throughput table, then latency and targets."""
    console.print(throughput(results))
    console.print(targets(results))
    for failure in results.failures:
        console.print(f"[red]failed:[/red] {failure}")


def throughput(results: Results) -> Table:
    """One row per program; per shape its events/s, CPU seconds per million events and peak memory."""
    config = results.config
    table = Table(
        title=f"driftline benchmark: {config.events:,} events ({config.models} models, {config.features} features, "
        f"{config.window_s / 60:g}-min windows), envelopes of up to {config.envelope}",
        title_justify="left",
    )
    table.add_column("program")
    for shape in SHAPES:
        label = "one event per message" if shape == "single" else "envelopes"
        table.add_column(f"{label}\nevents/s", justify="right")
        table.add_column("CPU s per\nM events", justify="right")
        table.add_column("peak\nRSS MiB", justify="right")
    for key, name in PROGRAMS.items():
        cells = []
        for shape in SHAPES:
            run = results.runs.get((key, shape))
            cells += (
                [f"{run.events_per_s:,.0f}", f"{run.cpu_s_per_million:.1f}", f"{run.peak_rss_bytes / MIB:,.0f}"]
                if run
                else ["-", "-", "-"]
            )
        table.add_row(f"({key}) {name}", *cells)
    table.add_section()
    for other in "abc":
        ratios = [results.ratio(shape, "d", other) for shape in SHAPES]
        table.add_row(f"ratio (d)/({other})", *[cell for r in ratios for cell in (_ratio(r), "", "")])
    rows = results.sink_rows_per_s()
    if rows is not None:
        table.add_row("sink rows/s (every table)", "", "", "", f"{rows:,.0f}", "", "")
    return table


def targets(results: Results) -> Table:
    """Latency of the run with both processes, and the performance targets."""
    table = Table(title="latency and targets", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target")
    table.add_column("met")
    latency = results.latency
    if latency is not None:
        table.add_row(
            f"producer rate (half of worker + sink's), {latency.events:,} events", f"{latency.rate:,.0f}/s", "", ""
        )
        table.add_row(
            "worker's backlog when the producer stopped; last closed window stored after",
            f"{latency.behind_events:,} events; {latency.complete_after_s:.1f} s",
        )
        late = (
            f", {latency.windows_missing} not stored within {ARRIVAL_TIMEOUT_S:.0f} s"
            if latency.windows_missing
            else ""
        )
        p50, p99 = (_seconds(_censored(p, latency)) for p in (latency.window_p50_s, latency.window_p99_s))
        table.add_row(f"window close -> ClickHouse row, p50 / p99 ({latency.windows} rows{late})", f"{p50} / {p99}")
        table.add_row(
            f"window close -> trigger on the topic, p50 / p99 ({latency.triggers} triggers)",
            f"{_seconds(latency.trigger_p50_s)} / {_seconds(latency.trigger_p99_s)}",
        )
        table.add_row("driftline run (worker + sink) peak RSS", f"{latency.peak_rss_bytes / MIB:,.0f} MiB")
    for target in results.targets():
        met = "-" if target.met is None else "[green]yes[/green]" if target.met else "[red]no[/red]"
        table.add_row(target.name, _value(target.value, target.goal), target.goal, met)
    return table


def _censored(value: float | None, latency: Latency) -> float | None:
    """A percentile that fell on a window never stored in time is later than the wait: infinite."""
    return math.inf if value is None and latency.windows_missing else value


def _ratio(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" if math.isfinite(value) else f"> {ARRIVAL_TIMEOUT_S:.0f} s"


def _value(value: float | None, goal: str) -> str:
    if value is None:
        return "-"
    if "events/s" in goal:
        return f"{value:,.0f}"
    if goal.endswith(" s"):
        return _seconds(value)
    if "GiB" in goal:
        return f"{value:.2f} GiB"
    return f"{value:.2f}"

"""The demo end to end on a shortened story: the real broker, worker and sink, the same checks as `make demo`
(every injected problem flagged in its phase's first window or the next, a trigger in every problem phase,
none in the stable period), and every SQL query the summary offers runs as printed.

The run is shared: :func:`shortened_demo` plays the story once per session and the ``demo_run`` fixture hands it
to the tests here and to the dashboard queries (tests/integration/test_dashboards.py), which read its rows."""

from __future__ import annotations

import io
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from driftline.cli import app
from driftline.demo.run import Outcome, run_demo
from driftline.demo.story import DEMO_DATABASE, Story
from driftline.demo.summary import QUERIES, print_summary
from driftline.devtools.local_broker import free_port
from driftline.settings import load_settings

pytestmark = pytest.mark.integration

SHORT = Story(seed=7, windows_per_phase=2, cooldown_windows=1, play_s=15.0)
"""Two one-hour windows per phase (a problem's own window and the next; cooldown one window), played in 15 s."""


@dataclass(frozen=True)
class DemoRun:
    """One run of the shortened story: what it found and the progress it printed."""

    outcome: Outcome
    progress: str


_RUNS: dict[tuple[str, Path], DemoRun | str] = {}


def shortened_demo(kafka_bootstrap: str, session_dir: Path) -> DemoRun:
    """The shortened story played once per broker and session directory (the demo's own topics and database,
    ``driftline_demo``, in the session's embedded ClickHouse), whichever module asks first; a run that failed
    is not played again."""
    key = (kafka_bootstrap, session_dir)
    if key not in _RUNS:
        base = load_settings(
            data_dir=session_dir,
            kafka={"bootstrap": kafka_bootstrap, "partitions": 2},
            clickhouse={"dsn": f"chdb://{session_dir / 'clickhouse'}"},
        )
        progress = io.StringIO()
        try:
            outcome = run_demo(base, SHORT, Console(file=progress, width=200))
        except Exception as exc:
            _RUNS[key] = f"the shared demo run failed: {exc!r}\n{progress.getvalue()}"
            raise
        _RUNS[key] = DemoRun(outcome, progress.getvalue())
    run = _RUNS[key]
    if isinstance(run, str):
        pytest.fail(run)
    return run


@pytest.fixture(scope="session")
def demo_run(kafka_bootstrap: str, session_dir: Path) -> Iterator[DemoRun]:
    """The session's run of the shortened demo (a module that imports this fixture shares the same run)."""
    yield shortened_demo(kafka_bootstrap, session_dir)


def test_shortened_demo_detects_every_injected_problem_and_its_queries_run(demo_run: DemoRun) -> None:
    outcome, progress = demo_run.outcome, demo_run.progress
    settings = outcome.settings

    verdict = outcome.verdict
    assert verdict.passed, f"{verdict.failures}\n{progress}"
    phases = {phase.name: phase for phase in verdict.phases}
    assert list(phases) == ["stable", "covariate-drift", "fairness-gap", "concept-drift", "new-version"]
    assert phases["stable"].triggers.empty
    for name, kind in (("covariate-drift", "drift"), ("fairness-gap", "fairness"), ("concept-drift", "performance")):
        [finding] = phases[name].findings
        assert finding.flag is not None and finding.flag.kind == kind
        assert finding.flag.window_start - phases[name].start < timedelta(seconds=2 * SHORT.window_s)
        assert not phases[name].triggers.empty
    assert set(outcome.rows.performance["model_version"]) == {"1.0", "2.0"}
    assert outcome.sent.malformed > 0 and int(outcome.dead_letters["letters"].sum()) == outcome.sent.malformed
    assert "▶ phase concept-drift" in progress and "⚑" in progress

    summary = io.StringIO()
    print_summary(outcome, Console(file=summary, width=1000))
    text = summary.getvalue()
    assert "✓ Every injected problem was flagged" in text
    assert outcome.report is not None and outcome.report.is_file() and str(outcome.report) in text

    dsn = f"DRIFTLINE_CLICKHOUSE_DSN={settings.clickhouse_dsn}"
    for analyst_query in QUERIES:
        command = analyst_query.command()
        assert command in text
        *assignments, program, subcommand, sql = shlex.split(command)
        assert (program, subcommand, sql) == ("driftline", "sql", analyst_query.sql)
        env = dict(item.split("=", 1) for item in [*assignments, dsn])
        assert env["DRIFTLINE_CLICKHOUSE_DATABASE"] == DEMO_DATABASE
        result = CliRunner().invoke(app, [subcommand, sql], env={**env, "DRIFTLINE_SINK_SQL_PORT": str(free_port())})
        assert result.exit_code == 0, result.output
        assert "│" in result.output, f"no rows for: {analyst_query.question}"  # a data row of the table

"""The demo end to end on a shortened story: the real broker, worker and sink, the same checks as `make demo`
(every injected problem flagged in its phase's first window or the next, a trigger in every problem phase,
none in the stable period), and every SQL query the summary offers runs as printed."""

from __future__ import annotations

import io
import shlex
from datetime import timedelta

import pytest
from rich.console import Console
from typer.testing import CliRunner

from driftline.cli import app
from driftline.demo import DEMO_DATABASE, QUERIES, Story, print_summary, run_demo
from driftline.settings import Settings
from tests.conftest import free_port

pytestmark = pytest.mark.integration

SHORT = Story(seed=7, windows_per_phase=2, cooldown_windows=1, play_s=15.0)
"""Two one-hour windows per phase (a problem's own window and the next; cooldown one window), played in 15 s."""


def test_shortened_demo_detects_every_injected_problem_and_its_queries_run(settings: Settings) -> None:
    progress = io.StringIO()
    outcome = run_demo(settings, SHORT, Console(file=progress, width=200))

    verdict = outcome.verdict
    assert verdict.passed, f"{verdict.failures}\n{progress.getvalue()}"
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
    assert "▶ phase concept-drift" in progress.getvalue() and "⚑" in progress.getvalue()

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

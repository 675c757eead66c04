"""The end of the demo: what each phase injected and when driftline saw it, each trigger with its reasons, dead
letters by reason, the queries an analyst runs next, where the data lives and the verdict."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

import pandas as pd
from rich.console import Console
from rich.table import Table

from driftline.demo.live import trigger_line, windows_between
from driftline.demo.run import Outcome
from driftline.demo.story import DEMO_DATABASE, DEMO_PREFIX, MODEL_ID
from driftline.schemas.results import RetrainTrigger
from driftline.schemas.topics import ALL_TOPICS
from driftline.sinks.clickhouse import is_embedded, redacted


@dataclass(frozen=True)
class AnalystQuery:
    """A question an analyst asks next, and the SQL that answers it from the demo's database."""

    question: str
    sql: str

    def command(self, database: str = DEMO_DATABASE) -> str:
        """The shell command that runs it with ``driftline sql`` (the SQL quoted for a POSIX shell)."""
        return f"DRIFTLINE_CLICKHOUSE_DATABASE={database} driftline sql {_shell_quoted(self.sql)}"


QUERIES = (
    AnalystQuery(
        "Accuracy per window as the late labels arrived, beside the estimate from the scores alone",
        "SELECT window_start, model_version, labelled, round(label_coverage, 2) AS coverage, "
        "round(accuracy, 3) AS accuracy, round(estimated_accuracy, 3) AS estimated "
        "FROM performance_windows_latest ORDER BY window_start, model_version",
    ),
    AnalystQuery(
        "Which features drifted, how far, and from which window",
        "SELECT feature, round(max(psi), 3) AS worst_psi, round(max(wasserstein), 3) AS worst_wasserstein, "
        "minIf(window_start, psi > 0.2) AS first_over_0_2 FROM drift_windows_latest "
        "WHERE model_version = '1.0' AND NOT too_few_samples "
        "GROUP BY feature HAVING worst_psi > 0.2 ORDER BY worst_psi DESC",
    ),
    AnalystQuery(
        "Selection rate and true-positive rate of each group, window by window",
        "SELECT window_start, groupArray(concat(group, ': ', toString(round(selection_rate, 3)))) AS selection_rate, "
        "groupArray(concat(group, ': ', toString(round(tpr, 3)))) AS tpr, "
        "any(round(demographic_parity_ratio, 3)) AS parity_ratio "
        "FROM (SELECT * FROM fairness_windows_latest ORDER BY attribute, group) "
        "GROUP BY window_start ORDER BY window_start",
    ),
    AnalystQuery(
        "Every retraining decision, with the metrics that made it",
        "SELECT window_start, model_version, severity, arrayMap(r -> concat(JSONExtractString(r, 'metric'), ' = ', "
        "toString(round(JSONExtractFloat(r, 'observed'), 3))), JSONExtractArrayRaw(reasons)) AS reasons "
        "FROM retrain_triggers FINAL ORDER BY window_start",
    ),
    AnalystQuery(
        "The raw predictions behind the drift: median income and share of Ghent, hour by hour",
        "SELECT toStartOfHour(timestamp) AS hour, count() AS predictions, "
        "round(median(features_numeric['income'])) AS median_income, "
        "round(avg(features_categorical['city'] = 'Ghent'), 3) AS ghent_share "
        "FROM predictions FINAL GROUP BY hour ORDER BY hour",
    ),
)
"""The five queries the summary offers (each is run by the integration test)."""


def _shell_quoted(sql: str) -> str:
    """``sql`` as one shell word, readable: in single quotes when it has none, else in double quotes when
    nothing in it is special there, else as :func:`shlex.quote` makes it."""
    if "'" not in sql:
        return f"'{sql}'"
    if not set(sql) & set('"$`\\!'):
        return f'"{sql}"'
    return shlex.quote(sql)


def print_summary(outcome: Outcome, console: Console) -> None:
    """The end of the story: per phase what was detected and when, each trigger with its reasons, dead
    letters by reason, the analyst's next queries, where the data lives and the verdict."""
    story, sent = outcome.story, outcome.sent
    console.rule("driftline demo: summary")
    console.print(
        f"{MODEL_ID}: {story.span_s / 3600:g} h of event time in {outcome.seconds:.0f} s of wall time; "
        f"{sent.events:,} events sent ({sent.predictions:,} predictions, {sent.feedback:,} late labels, "
        f"{sent.malformed:,} malformed); windows of {story.window_s / 60:g} min; phases "
        f"{story.windows_per_phase * story.window_s / 60:g} min apart, policy cooldown "
        f"{story.cooldown_windows * story.window_s / 60:g} min.",
        highlight=False,
    )
    console.print(_phase_table(outcome))

    console.print(f"\n[bold]Retraining triggers[/bold] ({len(outcome.rows.triggers)})")
    for _index, row in outcome.rows.triggers.iterrows():
        console.print(f"  {trigger_line(_stored_trigger(row))}", highlight=False, markup=False)

    letters = ", ".join(f"{row.reason} {row.letters}" for row in outcome.dead_letters.itertuples(index=False))
    stored = int(outcome.dead_letters["letters"].sum()) if len(outcome.dead_letters) else 0
    console.print(
        f"\n[bold]Dead letters[/bold] ({stored} stored, {sent.malformed} malformed messages sent): {letters or 'none'}",
        highlight=False,
    )

    console.print("\n[bold]Look further[/bold] (once the demo has finished, from this directory)")
    for number, query in enumerate(QUERIES, 1):
        console.print(f"  {number}. {query.question}", highlight=False)
        console.print(f"     {query.command()}", highlight=False, markup=False, soft_wrap=True)

    console.print("\n[bold]Where the data lives[/bold]")
    for line in _where_the_data_lives(outcome):
        console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)

    if outcome.verdict.passed:
        console.print(
            "\n[bold green]✓ Every injected problem was flagged, and got a retraining trigger of its own kind, in the "
            "window where it started or the next; the stable period and each version's first window stayed "
            "quiet.[/bold green]"
        )
    else:
        console.print("\n[bold red]✗ The demo's checks failed:[/bold red]")
        for failure in outcome.verdict.failures:
            console.print(f"  - {failure}", highlight=False, markup=False)


def _phase_table(outcome: Outcome) -> Table:
    """Per phase: its windows and accuracy, what it injected, the first flag of each problem, its triggers."""
    table = Table(title="What each phase injected, and when driftline saw it", title_justify="left")
    for column in ("phase", "windows", "accuracy", "injected", "first flag (window: metric)", "triggers (window)"):
        table.add_column(column)
    for phase in outcome.verdict.phases:
        windows = windows_between(outcome.rows.performance, phase.start, phase.end)
        if phase.findings:
            injected = "\n".join(f.expectation.problem for f in phase.findings)
            found = "\n".join(
                f"{f.flag.window_start:%H:%M}: {f.flag.metric} = {f.flag.observed:.3g}"
                if f.flag is not None
                else "[red]not flagged in time[/red]"
                for f in phase.findings
            )
        else:
            injected = "nothing" if phase.stable else "a remedy: " + ", ".join(sorted(set(windows["model_version"])))
            found = ", ".join(dict.fromkeys(flag.metric for flag in phase.flags)) or "no flags"
        table.add_row(
            phase.name,
            f"{phase.start:%H:%M}–{phase.end:%H:%M} ({len(windows)})",
            f"{windows['accuracy'].mean():.3f}" if windows["accuracy"].notna().any() else "",
            injected,
            found,
            ", ".join(f"{start:%H:%M}" for start in phase.triggers["window_start"]) or "none",
        )
    return table


def _where_the_data_lives(outcome: Outcome) -> list[str]:
    """The broker, the topics, the command that follows the triggers, the database, the state and the report."""
    settings = outcome.settings
    dsn = settings.clickhouse_dsn
    database = f"the embedded ClickHouse at {dsn.removeprefix('chdb://')}" if is_embedded(dsn) else redacted(dsn)
    topics = ", ".join(settings.topic(spec.name) for spec in ALL_TOPICS)
    return [
        f"Kafka: {outcome.broker}",
        f"topics: {topics}",
        f"follow the triggers: DRIFTLINE_KAFKA_TOPIC_PREFIX={DEMO_PREFIX} driftline triggers tail --from-beginning",
        f"ClickHouse: database {DEMO_DATABASE} in {database}",
        f"worker state: the changelog topic {settings.worker.app_id}-state-changelog",
        f"HTML report: {outcome.report}" if outcome.report else f"HTML report: none ({outcome.report_note})",
    ]


def _stored_trigger(row: pd.Series) -> RetrainTrigger:
    """A ``retrain_triggers`` row back as the decision it stores (its reasons are stored as JSON)."""
    plain = {
        name: row[name] for name in RetrainTrigger.model_fields if name not in ("schema_version", "reasons", "evidence")
    }
    return RetrainTrigger.model_validate(
        {**plain, "reasons": json.loads(row["reasons"]), "evidence": list(row["evidence"])}
    )

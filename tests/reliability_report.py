"""The reliability suite's summary table (a pytest plugin, loaded by tests/conftest.py).

Each fault scenario records one :class:`Outcome` through the ``reliability`` fixture; at the end of the run the
table is printed: scenario, events sent, events stored, results compared, lost, duplicated, recovery time and
the figures measured (reported, not asserted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import pytest

COLUMNS = ("scenario", "sent", "stored", "compared", "lost", "duplicated", "recovery_s", "figures")


@dataclass(frozen=True)
class Outcome:
    """What one fault scenario proved: events in and out, results checked, and how long recovery took."""

    scenario: str
    sent: int
    stored: int
    compared: str  # which results were compared with what, e.g. "4 windows = stream truth"
    lost: int
    duplicated: int
    recovery_s: float | None  # from the end of the fault to everything stored; None when there is no fault
    figures: str = ""  # measured figures reported, not asserted: throughput, lag, peak memory


_OUTCOMES = pytest.StashKey[list[Outcome]]()


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Callable[[Outcome], None]:
    """Record a scenario's outcome for the summary table."""
    outcomes = request.config.stash.setdefault(_OUTCOMES, [])
    return outcomes.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    outcomes = config.stash.get(_OUTCOMES, [])
    if not outcomes:
        return
    rows = [COLUMNS] + [
        tuple(
            "-" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)
            for value in asdict(outcome).values()
        )
        for outcome in outcomes
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    terminalreporter.write_sep("=", "reliability summary")
    for index, row in enumerate(rows):
        terminalreporter.write_line("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            terminalreporter.write_line("  ".join("-" * width for width in widths))

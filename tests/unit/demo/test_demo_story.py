"""The demo's story judged offline, as ``make demo`` judges it live: for seeds 1 to 10, each injected problem
gets a trigger of its own kind (a drift rule on a drifted feature, a fairness rule, a performance rule or
ADWIN) in its onset window or the next, the stable period none, and no version a trigger in its first window."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftline.demo.story import Story
from tests.story_offline import play


@pytest.mark.parametrize("seed", range(1, 11))
def test_each_problem_of_the_story_gets_its_own_trigger_at_its_onset(seed: int, tmp_path: Path) -> None:
    played = play(Story(seed=seed), tmp_path / "state")
    verdict = played.verdict()

    assert verdict.passed, verdict.failures
    findings = [finding for phase in verdict.phases for finding in phase.findings]
    assert len(findings) == 3 and all(finding.decided for finding in findings)
    assert not verdict.phases[0].triggers.shape[0]  # the stable period

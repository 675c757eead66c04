"""The HTML report renders from rows alone: every plot is an embedded PNG, the triggers and phases are listed."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from driftline.demo.judge import judge
from driftline.demo.report import PLOTS, write_report
from driftline.schemas.policy import PolicySettings
from tests.unit.demo.story_rows import END, HOUR, SCENARIO, START, story_rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_embeds_each_plot_as_a_png_and_lists_phases_and_triggers(tmp_path: Path) -> None:
    rows = story_rows()
    policy = PolicySettings()
    verdict = judge(SCENARIO, rows, policy, start=START, end=END, window_s=HOUR)

    path = write_report(tmp_path / "out" / "report.html", rows, verdict, policy, title="demo <run>")

    page = path.read_text(encoding="utf-8")
    for plot in PLOTS:
        match = re.search(rf'<figure id="{plot}"><img alt="[^"]+" src="data:image/png;base64,([^"]+)">', page)
        assert match is not None, f"no {plot} plot"
        image = base64.b64decode(match.group(1))
        assert image.startswith(PNG_MAGIC) and len(image) > 5_000
    assert "<title>demo &lt;run&gt;</title>" in page  # escaped
    assert "psi:income = 0.9 (threshold 0.2)" in page
    assert "demographic_parity_ratio:group = 0.6 (threshold 0.8)" in page
    assert "Retraining triggers (2)" in page
    for phase in ("stable", "covariate-drift", "fairness-gap"):
        assert f"<td>{phase}</td>" in page
    assert 'class="pass"' in page
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing fetched when opened

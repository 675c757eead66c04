"""A small static HTML report of a monitored stream: accuracy, PSI per feature and fairness over windows, with
the phases of the story shaded and the retraining triggers marked.

One self-contained file that opens offline: the plots are drawn with matplotlib (the optional ``report``
extra: ``pip install 'driftline[report]'``) as PNG images embedded in base64, so the report needs no
JavaScript, no network and no plotting library to view; a few hundred kilobytes. Figures are drawn on
:class:`matplotlib.figure.Figure` objects (never pyplot), so nothing depends on a display or global state.

The report is a pure function of rows as the ClickHouse views hold them (:class:`~driftline.demo.flags.WindowRows`)
and of the phases of a :class:`~driftline.demo.judge.Verdict`:

- **accuracy**: realized accuracy per window and model version (from labels), the confidence-based estimate
  dashed, the ``accuracy_below`` threshold dotted;
- **psi**: PSI of every input feature per window on a log scale, the features that crossed the threshold
  named, the others grey; the ``psi_above`` threshold dotted;
- **fairness**: the demographic-parity ratio (lowest / highest selection rate) per sensitive attribute, and
  the ``demographic_parity_ratio_below`` threshold (the four-fifths rule) dotted.

Every plot marks each trigger with a vertical line at the start of its window (red: critical, orange:
warning), and the report lists the phases, what each injected and was found, and each trigger's reasons.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

import matplotlib as mpl
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from driftline.demo.flags import NOT_FEATURES, WindowRows
from driftline.demo.judge import Verdict
from driftline.schemas.policy import AccuracyBelow, PolicyRules
from driftline.schemas.results import TriggerReason

PLOTS = ("accuracy", "psi", "fairness")
"""The ids of the report's figures, in order."""
SEVERITY_COLOURS = {"critical": "#c0392b", "warning": "#e67e22"}
PHASE_SHADES = ("#f4f6f8", "#e8ecf1")
FIGURE_SIZE = (10.0, 3.4)
DPI = 100
PSI_FLOOR = 1e-4  # PSI of 0 has no place on a log scale


def write_report(
    path: Path,
    rows: WindowRows,
    verdict: Verdict,
    policy: PolicyRules,
    *,
    title: str,
) -> Path:
    """Write the report to ``path`` (its folder is created) and return ``path``; the threshold lines are those
    of ``policy``."""
    figures = {
        "accuracy": _accuracy(rows, verdict, policy.accuracy_below),
        "psi": _psi(rows, verdict, policy.psi_above.threshold),
        "fairness": _fairness(rows, verdict, policy.demographic_parity_ratio_below.threshold),
    }
    captions = {
        "accuracy": "Accuracy per window: realized from late labels (solid), estimated from the scores (dashed).",
        "psi": "Population stability index of each input feature against its version's reference profile.",
        "fairness": "Demographic-parity ratio (lowest / highest selection rate over the groups judged).",
    }
    body = [
        f"<h1>{html.escape(title)}</h1>",
        _verdict_html(verdict),
        *(
            f'<figure id="{name}"><img alt="{name} over windows" src="data:image/png;base64,{_png(figure)}">'
            f"<figcaption>{html.escape(captions[name])}</figcaption></figure>"
            for name, figure in figures.items()
        ),
        _phases_html(verdict),
        _triggers_html(rows.triggers),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_page(title, "\n".join(body)), encoding="utf-8")
    return path


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _axes(verdict: Verdict, rows: WindowRows, ylabel: str) -> tuple[Figure, Axes]:
    """A figure with the phases shaded and named, and the triggers marked."""
    figure = Figure(figsize=FIGURE_SIZE, layout="constrained")
    axes = figure.subplots()
    for index, phase in enumerate(verdict.phases):
        start, end = _x([phase.start, phase.end])
        axes.axvspan(start, end, color=PHASE_SHADES[index % 2], zorder=0)
        axes.text(
            start, 1.0, f" {phase.name}", transform=axes.get_xaxis_transform(), va="top", fontsize=8, color="#555555"
        )
    triggers = rows.triggers
    for severity, colour in SEVERITY_COLOURS.items():
        starts = _x(triggers.loc[triggers["severity"] == severity, "window_start"])
        for number, start in enumerate(starts):
            axes.axvline(
                start,
                color=colour,
                linewidth=1.2,
                alpha=0.8,
                zorder=1,
                label=f"{severity} trigger" if number == 0 else None,
            )
    axes.xaxis_date()
    axes.set_ylabel(ylabel)
    axes.set_xlabel("window start (event time, UTC)")
    axes.grid(axis="y", color="#dddddd", linewidth=0.6)
    return figure, axes


def _legend(axes: Axes) -> None:
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def _accuracy(rows: WindowRows, verdict: Verdict, rule: AccuracyBelow) -> Figure:
    """Realized and estimated accuracy per version, with the threshold each window was judged against (its
    version's reference accuracy minus the rule's drop, or the absolute threshold)."""
    figure, axes = _axes(verdict, rows, "accuracy")
    colours = _colours()
    for version, windows in rows.performance.sort_values("window_start").groupby("model_version"):
        colour = next(colours)
        starts = _x(windows["window_start"])
        axes.plot(starts, windows["accuracy"], marker="o", markersize=3, color=colour, label=f"{version} realized")
        axes.plot(
            starts, windows["estimated_accuracy"], linestyle="--", color=colour, alpha=0.7, label=f"{version} estimated"
        )
        thresholds = [
            rule.threshold_for(None if pd.isna(reference) else float(reference))
            for reference in windows["reference_accuracy"]
        ]
        judged = [math.nan if threshold is None else threshold for threshold in thresholds]
        axes.step(starts, judged, where="post", color=colour, linestyle=":", linewidth=1, label=f"{version} threshold")
    axes.margins(y=0.15)  # room for the phase names
    _legend(axes)
    return figure


def _psi(rows: WindowRows, verdict: Verdict, threshold: float) -> Figure:
    figure, axes = _axes(verdict, rows, "PSI (log scale)")
    drift = rows.drift[~rows.drift["feature"].isin(NOT_FEATURES)].sort_values("window_start")
    crossed = set(drift.loc[drift["psi"] > threshold, "feature"])
    colours = _colours()
    others = "other features"
    for (feature, version), windows in drift.groupby(["feature", "model_version"]):
        psi = windows["psi"].clip(lower=PSI_FLOOR)
        if feature in crossed:
            axes.plot(
                _x(windows["window_start"]),
                psi,
                marker="o",
                markersize=3,
                color=next(colours),
                label=f"{feature} ({version})",
            )
        else:
            axes.plot(_x(windows["window_start"]), psi, color="#b0b7bf", linewidth=0.8, label=others)
            others = "_"  # one legend entry for all of them
    axes.set_yscale("log")
    if len(drift):
        axes.set_ylim(top=max(float(drift["psi"].max()), threshold) * 4)  # room for the phase names
    axes.axhline(threshold, color="#333333", linestyle=":", linewidth=1, label=f"threshold {threshold:g}")
    _legend(axes)
    return figure


def _fairness(rows: WindowRows, verdict: Verdict, threshold: float) -> Figure:
    figure, axes = _axes(verdict, rows, "demographic-parity ratio")
    judged = rows.fairness[~rows.fairness["below_min_count"].astype(bool)]
    ratios = judged.groupby(["attribute", "model_version", "window_start"], as_index=False)[
        "demographic_parity_ratio"
    ].first()
    colours = _colours()
    for (attribute, version), windows in ratios.groupby(["attribute", "model_version"]):
        axes.plot(
            _x(windows["window_start"]),
            windows["demographic_parity_ratio"],
            marker="o",
            markersize=3,
            color=next(colours),
            label=f"{attribute} ({version})",
        )
    axes.axhline(threshold, color="#333333", linestyle=":", linewidth=1, label=f"threshold {threshold:g}")
    axes.set_ylim(0, 1.15)  # room for the phase names
    _legend(axes)
    return figure


def _colours() -> Iterator[str]:
    """Matplotlib's default colour cycle, endlessly."""
    return itertools.cycle(mpl.rcParams["axes.prop_cycle"].by_key()["color"])


def _x(stamps: Iterable[datetime]) -> list[float]:
    """Event times as matplotlib's date numbers: days since its date epoch (``date.epoch``), in UTC."""
    epoch = pd.Timestamp(mpl.rcParams["date.epoch"], tz="UTC")
    return [(pd.Timestamp(stamp).tz_convert("UTC") - epoch) / pd.Timedelta(days=1) for stamp in stamps]


def _verdict_html(verdict: Verdict) -> str:
    if verdict.passed:
        return (
            '<p class="pass">Every injected problem was flagged in the window where it started or the next, every '
            "problem phase led to a retraining trigger, and the stable period stayed quiet.</p>"
        )
    items = "".join(f"<li>{html.escape(failure)}</li>" for failure in verdict.failures)
    return f'<p class="fail">The checks failed:</p><ul class="fail">{items}</ul>'


def _phases_html(verdict: Verdict) -> str:
    lines = []
    for phase in verdict.phases:
        found = "; ".join(
            f"{f.expectation.problem}: "
            + (
                f"{f.flag.metric} = {f.flag.observed:.3g} in window {f.flag.window_start:%H:%M}"
                if f.flag is not None
                else "not flagged in time"
            )
            for f in phase.findings
        ) or ("nothing injected" if phase.stable else "no problem injected")
        lines.append(
            f"<tr><td>{html.escape(phase.name)}</td><td>{phase.start:%Y-%m-%d %H:%M}</td>"
            f"<td>{html.escape(found)}</td><td>{len(phase.triggers)}</td></tr>"
        )
    return (
        "<h2>Phases</h2><table><tr><th>phase</th><th>from</th><th>injected and found</th><th>triggers</th></tr>"
        + "".join(lines)
        + "</table>"
    )


def _triggers_html(triggers: pd.DataFrame) -> str:
    lines = []
    for trigger in triggers.sort_values("window_start").itertuples(index=False):
        reasons = "; ".join(TriggerReason.model_validate(r).text() for r in json.loads(str(trigger.reasons)))
        lines.append(
            f"<tr><td>{trigger.window_start:%Y-%m-%d %H:%M}</td><td>{html.escape(str(trigger.model_version))}</td>"
            f'<td class="{html.escape(str(trigger.severity))}">{html.escape(str(trigger.severity))}</td>'
            f"<td>{html.escape(reasons)}</td></tr>"
        )
    return (
        f"<h2>Retraining triggers ({len(lines)})</h2><table><tr><th>window</th><th>version</th><th>severity</th>"
        "<th>reasons</th></tr>" + "".join(lines) + "</table>"
    )


def _page(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1040px; margin: 2em auto; color: #222; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; }} figcaption {{ font-size: 0.9em; color: #555; }}
table {{ border-collapse: collapse; font-size: 0.9em; }} td, th {{ border-bottom: 1px solid #ddd; padding: 4px 8px;
text-align: left; vertical-align: top; }}
.pass {{ color: #1e7b34; font-weight: bold; }} .fail {{ color: #c0392b; font-weight: bold; }}
.critical {{ color: #c0392b; }} .warning {{ color: #e67e22; }}
</style></head>
<body>
{body}
</body></html>
"""

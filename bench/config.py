"""What a benchmark run measures: the stream, the worker's settings, and the names each program uses.

The stream stands for a busy production deployment: 100 models (one version each), 13 features (9 numeric,
4 categorical), one sensitive attribute with 3 groups, 150 predictions per second of event time in all
(about 13 million a day), labels for 80% of predictions after an exponential delay of mean 2 minutes (about a
fifth arrive after their window closed: late labels that re-emit it), 0.1% malformed messages, and covariate
drift in ``income`` and ``city`` from the middle of the span, so drift triggers fire. The worker uses 5-minute
tumbling windows, a 60 s grace period and a 30-minute label horizon; each model builds its reference from its
first 1,000 predictions. One million events (predictions plus feedback) span about 62 minutes of event time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from driftline.settings import env_var_name
from driftline.simulation.scenarios import scenario
from driftline.simulation.world import SimulationConfig, model_names

Shape = Literal["envelopes", "single"]
SHAPES: tuple[Shape, ...] = ("single", "envelopes")


@dataclass(frozen=True)
class BenchConfig:
    """The parameters of a run; every figure in the history line is read against them."""

    events: int = 1_000_000
    envelope: int = 500
    models: int = 100
    features: int = 13
    predictions_per_s: float = 150.0
    label_share: float = 0.8
    label_delay_s: float = 120.0
    window_s: float = 300.0
    grace_s: float = 60.0
    horizon_s: float = 1800.0
    reference_first_n: int = 1000
    partitions: int = 4
    seed: int = 8
    labels_first: bool = False  # (c) reads every feedback message before any prediction: labels far ahead

    @property
    def predictions(self) -> int:
        """Predictions in the stream: ``events`` counts predictions plus their labels."""
        return max(1, round(self.events / (1 + self.label_share)))

    @property
    def span_s(self) -> float:
        """Event time the stream spans."""
        return self.predictions / self.predictions_per_s

    def simulation(self) -> SimulationConfig:
        """The seeded stream: the same config always gives the same events."""
        return SimulationConfig(
            seed=self.seed,
            models=model_names(self.models),
            features=self.features,
            predictions=self.predictions,
            duration_s=self.span_s,
            label_share=self.label_share,
            label_delay="exponential",
            label_delay_s=self.label_delay_s,
            scenario=scenario("covariate-drift", self.span_s, starts=[self.span_s / 2]),
        )

    def as_dict(self) -> dict[str, Any]:
        """The parameters, for the history line."""
        return {**asdict(self), "predictions": self.predictions, "span_s": round(self.span_s)}


@dataclass(frozen=True)
class Names:
    """Where one run of one program lives: its topic prefix, data directory and ports."""

    bootstrap: str
    prefix: str
    data_dir: Path
    app_id: str
    web_port: int
    sql_port: int
    metrics_port: int


def overrides(config: BenchConfig, names: Names) -> dict[str, Any]:
    """``load_settings`` overrides for the worker, the monitor core and the sink of one run."""
    return {
        "data_dir": str(names.data_dir),
        "kafka": {"bootstrap": names.bootstrap, "topic_prefix": names.prefix, "partitions": config.partitions},
        "monitor": {
            "window_s": config.window_s,
            "grace_s": config.grace_s,
            "horizon_s": config.horizon_s,
            "reference_first_n": config.reference_first_n,
        },
        "worker": {"app_id": names.app_id, "web_port": names.web_port},
        "sink": {"group_id": f"{names.app_id}-sink", "sql_port": names.sql_port, "metrics_port": names.metrics_port},
        "clickhouse": {"dsn": f"chdb://{names.data_dir / 'clickhouse'}", "database": "bench"},
    }


def environment(settings: dict[str, Any]) -> dict[str, str]:
    """The same overrides as ``DRIFTLINE_*`` variables, for ``driftline worker`` and ``driftline run``."""
    variables = {}
    for section, value in settings.items():
        if isinstance(value, dict):
            variables.update({env_var_name((section, key)): str(item) for key, item in value.items()})
        else:
            variables[env_var_name((section,))] = str(value)
    return variables

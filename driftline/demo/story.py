"""The demo's script: the simulator's ``story`` scenario, the sizes it is played at and the demo's namespace.

:class:`Story` holds the sizes: by default 5 phases of 5 one-hour windows of 6,000 predictions each, played
in about 75 s when the worker keeps up; the policy's cooldown (2 windows) is shorter than the spacing of the
phases, so each phase can raise its own trigger. :func:`story_references` builds the reference profile of each
version it serves. A run is :func:`driftline.demo.run.run_demo`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from driftline.client.reference import build_reference
from driftline.demo.flags import WindowRows
from driftline.demo.judge import Verdict, judge
from driftline.devtools.local_broker import free_port
from driftline.schemas.policy import PolicySettings
from driftline.schemas.results import ReferenceProfile
from driftline.settings import Settings
from driftline.simulation.scenarios import Scenario, scenario
from driftline.simulation.simulator import TRAINING_OUTCOME, Simulation
from driftline.simulation.world import DEFAULT_START, SimulationConfig

MODEL_ID = "credit-risk"

DEMO_PREFIX = "driftline-demo."

DEMO_DATABASE = "driftline_demo"


@dataclass(frozen=True)
class Story:
    """The demo's script: the simulator's ``story`` scenario and the sizes it is played at.

    Phases start every ``windows_per_phase`` windows; the stream runs a tenth of a window past the last phase's
    end, so the watermark passes it and every judged window closes. Labels come for 80% of the predictions
    after an exponential delay (mean ``label_delay_s``); windows stay open for them ``horizon_windows``.
    Page–Hinkley's threshold λ is raised from the default 50 to ``page_hinkley_threshold``: with River's
    fading factor α = 0.9999 its statistic on calibrated scores (σ ≈ 0.4) wanders with a standard deviation
    of about σ/√(2(1−α)) ≈ 28, and at λ = 50 it fired about once per 15,000 stable scores; at 200 it stayed
    quiet over 600,000 and still caught a 0.05 shift of the score mean within 5,000 scores.
    """

    seed: int = 7
    windows_per_phase: int = 5
    predictions_per_window: int = 6_000
    window_s: float = 3600.0
    label_delay_s: float = 900.0
    horizon_windows: int = 2
    cooldown_windows: int = 2
    page_hinkley_threshold: float = 200.0
    play_s: float = 75.0
    training_rows: int = 5_000

    @property
    def phases(self) -> int:
        """Phases of the ``story`` scenario."""
        return len(scenario("story", 1.0).phases)

    @property
    def span_s(self) -> float:
        """Event time of the judged story: every phase, ``windows_per_phase`` windows each."""
        return self.phases * self.windows_per_phase * self.window_s

    @property
    def duration_s(self) -> float:
        """Event time simulated: the span and a tenth of a window, whose predictions close the last window."""
        return self.span_s + self.window_s / 10

    @property
    def speedup(self) -> float:
        """Event time per wall time, so the stream plays in ``play_s``."""
        return self.duration_s / self.play_s

    def scenario(self) -> Scenario:
        """The ``story`` scenario with a phase every ``windows_per_phase`` windows."""
        spacing = self.windows_per_phase * self.window_s
        return scenario("story", self.duration_s, [i * spacing for i in range(1, self.phases)])

    def simulation(self) -> Simulation:
        """The simulated stream of one model, ``credit-risk``."""
        windows = self.duration_s / self.window_s
        return Simulation(
            SimulationConfig(
                seed=self.seed,
                models=(MODEL_ID,),
                predictions=round(self.predictions_per_window * windows),
                duration_s=self.duration_s,
                label_delay_s=self.label_delay_s,
                scenario=self.scenario(),
            )
        )

    def judge(self, rows: WindowRows, settings: Settings) -> Verdict:
        """The verdict on ``rows`` of a run of this story with ``settings`` (its policy)."""
        return judge(
            self.scenario(),
            rows,
            settings.policy.for_model(MODEL_ID),
            start=DEFAULT_START,
            end=DEFAULT_START + timedelta(seconds=self.span_s),
            window_s=self.window_s,
        )

    def settings(self, base: Settings) -> Settings:
        """``base`` (broker, data directory, ClickHouse location) with the demo's namespace, windows and
        policy: its own topic prefix, database, worker app id and sink group (fresh per run), a free port for
        the worker's web page, and the default policy rules with the demo's cooldown."""
        run = uuid.uuid4().hex[:8]
        return base.model_copy(
            update={
                "kafka": base.kafka.model_copy(update={"topic_prefix": DEMO_PREFIX}),
                "clickhouse": base.clickhouse.model_copy(update={"database": DEMO_DATABASE}),
                "worker": base.worker.model_copy(update={"app_id": f"driftline-demo-{run}", "web_port": free_port()}),
                "sink": base.sink.model_copy(update={"group_id": f"driftline-demo-sink-{run}"}),
                "monitor": base.monitor.model_copy(
                    update={
                        "window_s": self.window_s,
                        "grace_s": self.window_s / 60,
                        "horizon_s": self.horizon_windows * self.window_s,
                        "page_hinkley_threshold": self.page_hinkley_threshold,
                    }
                ),
                "policy": PolicySettings(cooldown_s=self.cooldown_windows * self.window_s),
                "models": {},
            }
        )


def story_references(settings: Settings, story: Story, simulation: Simulation) -> list[tuple[ReferenceProfile, float]]:
    """The reference profile of each version the story serves, built as ``driftline reference build`` would
    from a simulated training set (with its true outcomes and sensitive column) of the world at the time the
    version was trained, with that time (event-time seconds from the start)."""
    sensitive = tuple(attribute.name for attribute in simulation.config.sensitive)
    return [
        (
            build_reference(
                settings,
                simulation.training_set(story.training_rows, at_s=at_s),
                MODEL_ID,
                version,
                label_column=TRAINING_OUTCOME,
                sensitive=sensitive,
            ),
            at_s,
        )
        for version, at_s in _releases(story.scenario(), simulation)
    ]


def _releases(story: Scenario, simulation: Simulation) -> list[tuple[str, float]]:
    """Each model version the scenario serves and the event time (s) its training data comes from."""
    versions = [(simulation.config.version_name(0), 0.0)]
    for index, phase in enumerate(story.phases):
        released, since = story.releases(index)
        if since == phase.start_s:
            versions.append((simulation.config.version_name(simulation.config.versions + released - 1), since))
    return versions

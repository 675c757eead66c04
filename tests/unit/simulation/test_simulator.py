"""The simulator tells its scenarios with numbers that can be checked: calibration, drift, gaps, labels, order."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest
import typer
from scipy.stats import ks_2samp
from typer.testing import CliRunner

from driftline.cli import app
from driftline.client.backfill import read_frame
from driftline.schemas.decoding import EventDecoder, Origin
from driftline.schemas.errors import ConfigError, DriftlineError
from driftline.schemas.events import FeedbackEvent, PredictionEvent
from driftline.schemas.topics import FEEDBACK, PREDICTIONS
from driftline.simulation.malformed import MALFORMATIONS, Malformation
from driftline.simulation.scenarios import (
    SCENARIOS,
    BrokenFeature,
    ConceptDrift,
    CovariateDrift,
    NewVersion,
    Phase,
    Scenario,
    ScriptTargets,
    scenario,
)
from driftline.simulation.simulator import Simulation
from driftline.simulation.traffic import Pacer
from driftline.simulation.world import SensitiveAttribute, SimulationConfig, model_names
from driftline.streams.core.metrics.profile import PREDICTED_LABEL, SCORE, build_profile
from driftline.streams.core.metrics.reference_columns import ReferenceColumns

HOUR = 3600.0
Delay = Literal["exponential", "lognormal", "fixed"]
ORIGIN = Origin("predictions", 0, 0)


def labelled(name: str, predictions: int = 40_000, duration_s: float = 10 * HOUR) -> pd.DataFrame:
    """Predictions of a built-in scenario with every true label joined (``truth``); nothing malformed."""
    config = SimulationConfig(
        predictions=predictions,
        duration_s=duration_s,
        label_share=1.0,
        malformed_share=0.0,
        scenario=scenario(name, duration_s),
    )
    predictions_frame, feedback = Simulation(config).frames()
    truth = feedback[["prediction_id", "label"]].rename(columns={"label": "truth"})
    return predictions_frame.merge(truth, on="prediction_id", validate="one_to_one")


def accuracy(frame: pd.DataFrame) -> float:
    return float((frame["label"] == frame["truth"]).mean())


def calibration_error(frame: pd.DataFrame, bins: int = 10) -> float:
    """Expected calibration error: Σ_bins (n_b / n) · |mean label_b − mean score_b|."""
    binned = frame.groupby(
        pd.cut(frame["score"], np.linspace(0, 1, bins + 1).tolist(), include_lowest=True), observed=True
    )
    gaps = (binned["truth"].mean() - binned["score"].mean()).abs()
    return float((gaps * binned.size() / len(frame)).sum())


def test_the_same_seed_gives_the_same_events_and_another_seed_does_not() -> None:
    config = SimulationConfig(predictions=3_000, malformed_share=0.02, scenario=scenario("story", 3600))

    first = [(e.kind, e.time_ms, e.key, e.payload) for e in Simulation(config).events()]
    again = [(e.kind, e.time_ms, e.key, e.payload) for e in Simulation(config).events()]
    other = [(e.kind, e.time_ms, e.key, e.payload) for e in Simulation(SimulationConfig(seed=8)).events()]

    assert first == again
    assert len(first) > 3_000
    assert first[:50] != other[:50]


def test_stable_scores_are_calibrated_and_confident() -> None:
    frame = labelled("stable")

    assert calibration_error(frame) < 0.015
    brier = float(((frame["score"] - frame["truth"]) ** 2).mean())
    assert brier < 0.1
    # calibrated: the realised accuracy is what the scores promise, max(s, 1 - s) on average
    assert accuracy(frame) == pytest.approx(float(np.maximum(frame["score"], 1 - frame["score"]).mean()), abs=0.01)
    assert 0.85 < accuracy(frame) < 0.93


def test_covariate_drift_moves_the_named_features_and_no_others() -> None:
    frame = labelled("covariate-drift")
    stable, drifted = frame[frame["phase"] == "stable"], frame[frame["phase"] == "covariate-drift"]

    # income is lognormal(10.8, 0.5): a shift of one latent sd moves log(income) by 0.5
    assert np.log(drifted["income"]).mean() - np.log(stable["income"]).mean() == pytest.approx(0.5, abs=0.03)
    # city mixes half its mass into its rarest category, Ghent (share 0.08): 0.5 · 0.08 + 0.5 = 0.54
    assert (stable["city"] == "Ghent").mean() == pytest.approx(0.08, abs=0.01)
    assert (drifted["city"] == "Ghent").mean() == pytest.approx(0.54, abs=0.015)
    for name in ("age", "debt_ratio", "loan_amount", "employment_years"):
        assert drifted[name].mean() == pytest.approx(stable[name].mean(), rel=0.03), name
    for name in ("channel", "product", "device"):
        shares = stable[name].value_counts(normalize=True)
        moved = drifted[name].value_counts(normalize=True).reindex(shares.index) - shares
        assert moved.abs().max() < 0.015, name
    assert calibration_error(drifted) < 0.015  # the world moved, the relation did not


def test_concept_drift_lowers_realised_accuracy_while_scores_stay() -> None:
    frame = labelled("concept-drift")
    stable, drifted = frame[frame["phase"] == "stable"], frame[frame["phase"] == "concept-drift"]

    assert accuracy(stable) - accuracy(drifted) > 0.15
    assert ks_2samp(stable["score"], drifted["score"]).statistic < 0.03
    assert drifted["age"].mean() == pytest.approx(stable["age"].mean(), rel=0.02)
    assert calibration_error(drifted) > 0.1


def test_prediction_drift_shifts_the_scores() -> None:
    frame = labelled("prediction-drift")
    stable, drifted = frame[frame["phase"] == "stable"], frame[frame["phase"] == "prediction-drift"]

    assert drifted["score"].mean() - stable["score"].mean() > 0.05
    assert ks_2samp(stable["score"], drifted["score"]).statistic > 0.1
    assert drifted["income"].mean() == pytest.approx(stable["income"].mean(), rel=0.03)


def test_fairness_gap_lowers_one_groups_selection_rate() -> None:
    frame = labelled("fairness-gap")
    stable = frame[frame["phase"] == "stable"]
    # the gap grows over half the phase's length: take its second half, at full strength
    end = frame["timestamp"].min() + pd.Timedelta(seconds=7.5 * HOUR)
    grown = frame[(frame["phase"] == "fairness-gap") & (frame["timestamp"] >= end)]

    before = stable.groupby("group")["label"].mean()
    after = grown.groupby("group")["label"].mean()
    assert before.min() / before.max() > 0.9
    assert before["g3"] - after["g3"] > 0.2
    assert after["g1"] == pytest.approx(before["g1"], abs=0.03)
    assert after["g3"] / after["g1"] < 0.8  # fails the four-fifths rule


def test_broken_feature_breaks_into_nulls_then_into_a_unit_change() -> None:
    frame = labelled("broken-feature", duration_s=9 * HOUR)
    stable, nulls, unit = (frame[frame["phase"] == name] for name in ("stable", "feature-nulls", "unit-change"))

    assert stable["debt_ratio"].isna().mean() == 0
    assert nulls["debt_ratio"].isna().mean() == pytest.approx(0.5, abs=0.02)
    assert nulls.drop(columns="debt_ratio").isna().sum().sum() == 0
    assert unit["debt_ratio"].isna().mean() == 0  # that phase no longer lists the nulls
    assert unit["income"].median() / stable["income"].median() == pytest.approx(1000, rel=0.05)
    assert accuracy(unit) < accuracy(stable) - 0.1  # the model reads the broken value as out of range


def test_new_version_serves_calibrated_scores_again_after_concept_drift() -> None:
    frame = labelled("story", duration_s=10 * HOUR)
    by_phase = {name: group for name, group in frame.groupby("phase")}

    assert set(by_phase["concept-drift"]["model_version"]) == {"1.0"}
    assert set(by_phase["new-version"]["model_version"]) == {"2.0"}
    assert calibration_error(by_phase["concept-drift"]) > 0.1
    assert calibration_error(by_phase["new-version"]) < 0.02
    assert accuracy(by_phase["new-version"]) == pytest.approx(accuracy(by_phase["stable"]), abs=0.02)


@pytest.mark.parametrize(
    ("delay", "sigma"), [("exponential", 1.0), ("lognormal", 1.0), ("lognormal", 0.3), ("fixed", 1.0)]
)
def test_label_share_and_delays_follow_the_config(delay: Delay, sigma: float) -> None:
    config = SimulationConfig(
        predictions=30_000,
        label_share=0.7,
        label_delay=delay,
        label_delay_s=120.0,
        label_delay_sigma=sigma,
    )
    predictions, feedback = Simulation(config).frames()
    joined = feedback.merge(predictions[["prediction_id", "timestamp"]], on="prediction_id", suffixes=("", "_p"))
    delays = (joined["timestamp"] - joined["timestamp_p"]).dt.total_seconds()

    assert len(feedback) / len(predictions) == pytest.approx(0.7, abs=0.01)
    assert feedback["prediction_id"].is_unique
    assert delays.min() >= 0
    assert delays.mean() == pytest.approx(120.0, rel=0.05)
    if delay == "fixed":
        assert delays.std() < 0.01
    if delay == "exponential":
        assert delays.std() == pytest.approx(120.0, rel=0.05)  # the exponential's sd equals its mean


@pytest.mark.parametrize("malformation", MALFORMATIONS, ids=lambda m: m.name)
def test_each_malformation_is_a_dead_letter_with_its_reason(malformation: Malformation) -> None:
    events = [
        e
        for e in Simulation(SimulationConfig(predictions=5_000, malformed_share=0.1)).events()
        if e.kind == "malformed"
    ]
    mine = [e for e in events if e.reason == malformation.reason and e.topic == malformation.topic]
    assert mine, "every malformation shows up in 500 draws"
    model = PredictionEvent if malformation.topic == PREDICTIONS.name else FeedbackEvent
    decoder = EventDecoder(model, malformation.topic)

    for event in mine:
        result = decoder.decode(event.payload, ORIGIN)
        assert result.events == []
        assert [letter.reason for letter in result.dead_letters] == [malformation.reason]


def test_malformed_share_follows_the_config_and_valid_payloads_pass_the_contracts() -> None:
    events = list(Simulation(SimulationConfig(predictions=20_000, malformed_share=0.05)).events())
    kinds = pd.Series([e.kind for e in events]).value_counts()

    assert kinds["malformed"] / kinds["prediction"] == pytest.approx(0.05, abs=0.005)
    for topic, model in ((PREDICTIONS.name, PredictionEvent), (FEEDBACK.name, FeedbackEvent)):
        payloads = [e.payload for e in events if e.kind != "malformed" and e.topic == topic]
        decoder = EventDecoder(model, topic)
        for start in range(0, len(payloads), 500):  # as the fast path sends them: envelopes of 500
            batch = payloads[start : start + 500]
            result = decoder.decode(b"[" + b",".join(batch) + b"]", ORIGIN)
            assert (len(result.events), result.dead_letters) == (len(batch), [])


def test_payloads_carry_the_drawn_values_whatever_the_names() -> None:
    config = SimulationConfig(
        predictions=500,
        id_prefix='run "7" 100%-',
        models=('fraud "v2"',),
        sensitive=(SensitiveAttribute("région", ("a%s", "b"), (0.5, 0.5)),),
        scenario=scenario("broken-feature", 3600),
    )
    simulation = Simulation(config)
    predictions, _ = simulation.frames()
    events = [e for e in simulation.events() if e.kind == "prediction"]

    for event, (_, row) in zip(events, predictions.iterrows(), strict=True):
        parsed = PredictionEvent.model_validate_json(event.payload)
        assert parsed.prediction_id == row["prediction_id"] == event.key
        assert parsed.model_id == 'fraud "v2"'
        assert parsed.sensitive == {"région": row["région"]}
        assert parsed.prediction.score == row["score"]  # type: ignore[union-attr]
        for name in ("age", "income", "debt_ratio", "city"):
            value = parsed.features[name]
            assert value == row[name] if value is not None else pd.isna(row[name]), name


def test_events_come_in_event_time_order_with_labels_among_later_predictions() -> None:
    events = list(Simulation(SimulationConfig(predictions=20_000, label_delay_s=60.0)).events())
    times = [e.time_ms for e in events]
    position = {e.key: i for i, e in enumerate(events) if e.kind == "prediction"}
    feedback = [(i, e) for i, e in enumerate(events) if e.kind == "feedback"]

    assert times == sorted(times)
    assert all(position[e.key] < i for i, e in feedback)
    # interleaved: labels come among later predictions; only those due after the last prediction trail it,
    # about mean delay / duration of them (60 s / 3600 s)
    last_prediction = max(position.values())
    assert sum(i > last_prediction for i, _ in feedback) / len(feedback) == pytest.approx(60 / 3600, abs=0.004)
    phases = [e.phase for e in Simulation(SimulationConfig(scenario=scenario("story", 3600))).events()]
    assert [name for name, _ in itertools.groupby(phases)] == [p.name for p in scenario("story", 3600).phases]


def test_models_and_versions_share_the_traffic() -> None:
    config = SimulationConfig(models=model_names(4), versions=2, predictions=8_000)
    predictions, _ = Simulation(config).frames()

    counts = predictions.groupby(["model_id", "model_version"]).size()
    assert len(counts) == 8
    assert counts.min() > 800
    assert predictions["prediction_id"].is_unique
    means = predictions.groupby("model_id")["score"].mean()
    assert means.max() - means.min() > 0.02  # each model has its own weights


def test_training_set_is_what_reference_build_profiles(tmp_path: Path) -> None:
    simulation = Simulation(SimulationConfig(predictions=20_000))
    training = simulation.training_set(5_000)
    training.to_parquet(tmp_path / "training.parquet")

    assert simulation.reference_options() == "--label-column outcome --sensitive group"
    frame = read_frame(tmp_path / "training.parquet")
    profile = build_profile(frame, "model-000", "1.0", columns=ReferenceColumns(label="outcome", sensitive=("group",)))
    assert set(profile.features) == {f.name for f in simulation.features} | {SCORE, PREDICTED_LABEL}
    assert set(profile.features[PREDICTED_LABEL].category_shares or {}) == {"0", "1"}
    stream, feedback = simulation.frames()
    assert training["score"].mean() == pytest.approx(stream["score"].mean(), abs=0.02)
    assert training["prediction"].mean() == pytest.approx(stream["label"].mean(), abs=0.02)
    joined = stream.merge(feedback, on="prediction_id", suffixes=("", "_true"))
    assert profile.performance is not None and profile.performance.accuracy is not None
    stream_accuracy = (joined["label"].astype(str) == joined["label_true"].astype(str)).mean()
    assert profile.performance.accuracy == pytest.approx(stream_accuracy, abs=0.03)
    assert {row.group for row in profile.fairness} == {"g1", "g2", "g3"}


def test_parquet_files_hold_the_valid_events(tmp_path: Path) -> None:
    simulation = Simulation(SimulationConfig(predictions=2_000, scenario=scenario("broken-feature", 3600)))
    predictions_path, feedback_path = simulation.to_parquet(tmp_path)
    events = list(simulation.events())

    predictions, feedback = pd.read_parquet(predictions_path), pd.read_parquet(feedback_path)
    assert len(predictions) == sum(e.kind == "prediction" for e in events)
    assert len(feedback) == sum(e.kind == "feedback" for e in events)
    first = next(e.body for e in events if e.kind == "prediction")
    row = predictions.iloc[0]
    assert isinstance(first, dict)
    assert row["prediction_id"] == first["prediction_id"]
    assert row["timestamp"] == pd.Timestamp(first["timestamp"], unit="ms", tz="UTC")
    assert row["score"] == first["prediction"]["score"]
    assert row["age"] == first["features"]["age"]
    assert predictions["debt_ratio"].isna().any()


def test_scenarios_check_their_phases_and_targets() -> None:
    story = scenario("story", 1000.0)
    assert [p.start_s for p in story.phases] == [0, 200, 400, 600, 800]
    assert [p.start_s for p in scenario("concept-drift", 1000.0, starts=[700]).phases] == [0, 700]
    with pytest.raises(ConfigError, match="takes 1 phase start"):
        scenario("concept-drift", 1000.0, starts=[100, 200])
    with pytest.raises(ConfigError, match="unknown scenario 'drift'"):
        scenario("drift", 1000.0)
    with pytest.raises(ConfigError, match="acts on feature 'income'"):
        Simulation(SimulationConfig(features=1, scenario=scenario("covariate-drift", 3600)))
    with pytest.raises(ConfigError, match="unit change needs a numeric feature"):
        bad = Scenario("x", (Phase("stable", 0.0), Phase("broken", 10.0, (BrokenFeature("city", "unit_change"),))))
        Simulation(SimulationConfig(scenario=bad))
    with pytest.raises(ConfigError, match="after the 3600 s simulated"):
        Simulation(SimulationConfig(scenario=scenario("concept-drift", 3600, starts=[4000])))
    targeted = scenario("covariate-drift", 3600, targets=ScriptTargets(drift_features=("age",)))
    assert targeted.phases[1].effects == (CovariateDrift(("age",)),)


def test_an_effect_listed_again_continues_its_ramp_and_releases_count_once() -> None:
    drift = CovariateDrift(("age",), ramp_s=100.0)
    script = Scenario(
        "s",
        (
            Phase("a", 0.0),
            Phase("b", 50.0, (drift, ConceptDrift())),
            Phase("c", 100.0, (drift, NewVersion())),
            Phase("d", 200.0, (drift, NewVersion())),
        ),
    )
    assert [a.since for a in script.in_force(2)] == [50.0, 100.0]
    assert script.in_force(3)[0].ramp(np.array([100.0, 150.0, 400.0])).tolist() == [0.5, 1.0, 1.0]
    assert script.releases(1) == (0, None)
    assert script.releases(3) == (1, 100.0)


def test_pacer_holds_back_by_rate_and_by_event_time() -> None:
    assert not Pacer(0, 0).active
    by_rate = Pacer(rate=100, speedup=0)
    assert by_rate.wait_s(0, 0) <= 0
    assert by_rate.wait_s(50, 0) == pytest.approx(0.5, abs=0.05)
    by_time = Pacer(rate=0, speedup=1440)
    by_time.wait_s(0, 1_000_000)
    assert by_time.wait_s(1, 1_000_000 + 86_400_000) == pytest.approx(60.0, abs=0.05)  # a day in a minute


def test_simulate_writes_parquet_and_a_training_set_without_a_broker(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--no-send",
            "--predictions",
            "1000",
            "--scenario",
            "covariate-drift",
            "--parquet",
            str(tmp_path / "out"),
            "--training-set",
            str(tmp_path / "new" / "training.parquet"),  # its folder is made
        ],
    )

    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(tmp_path / "out" / "predictions.parquet")) == 1000
    assert set(pd.read_parquet(tmp_path / "out" / "predictions.parquet")["phase"]) == {"stable", "covariate-drift"}
    assert {"score", "prediction", "income"} <= set(pd.read_parquet(tmp_path / "new" / "training.parquet").columns)


def test_simulate_help_names_every_scenario() -> None:
    command = typer.main.get_group(app).commands["simulate"]
    scenario_help = next(str(getattr(p, "help", "")) for p in command.params if p.name == "scenario_name")

    assert CliRunner().invoke(app, ["simulate", "--help"]).exit_code == 0
    for name in SCENARIOS:
        assert name in scenario_help


def test_documented_simulation_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = (Path(__file__).resolve().parents[3] / "docs" / "sending-events.md").read_text()
    section = page.split("## Simulating a model in production", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)

    namespace: dict[str, object] = {}
    exec(compile(example, "docs/sending-events.md", "exec"), namespace)

    assert len(namespace["predictions"]) == 20_000  # type: ignore[arg-type]
    assert {"score", "prediction", "income"} <= set(namespace["training"].columns)  # type: ignore[attr-defined]


def test_simulating_event_time_ahead_of_the_clock_is_refused_before_anything_is_sent() -> None:
    """A day from now played in a minute would be stamped up to a day ahead of Kafka's clock: every event a
    timestamp_in_future dead letter. The command says so (no broker is asked: none runs here)."""
    env = {"DRIFTLINE_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    ahead = ["simulate", "--start", "now", "--duration", "86400", "--speedup", "1440", "-n", "100"]

    result = CliRunner().invoke(app, ahead, env=env)

    assert isinstance(result.exception, DriftlineError)
    assert "ahead of the time they are sent" in str(result.exception) and "--speedup 1" in str(result.exception)

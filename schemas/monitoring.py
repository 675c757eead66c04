"""The settings of the monitoring itself (windows, joins, detectors, emission pace): the one section of
:class:`driftline.settings.Settings` that the stream core reads, kept here with the contracts so that the core
needs nothing else of driftline."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MonitorSettings(BaseModel):
    """Event-time windows and the monitors computed in them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_s: float = Field(3600.0, gt=0, description="Size of the tumbling event-time windows, seconds.")
    grace_s: float = Field(60.0, ge=0, description="How late (event time) a prediction may be and still count.")
    horizon_s: float = Field(
        7 * 86400.0, gt=0, description="How long after a window's end its late labels are still joined, seconds."
    )
    max_future_s: float = Field(
        300.0,
        gt=0,
        description=(
            "An event stamped more than this after Kafka stored its message is a dead letter "
            "(timestamp_in_future), for the worker and the sink alike."
        ),
    )
    idle_timeout_s: float = Field(
        10.0, gt=0, description="A partition silent this long (processing time) stops holding the watermark back."
    )
    republish_s: float = Field(
        30.0,
        ge=0,
        description=(
            "A closed window that late labels change is published again at most this often (processing time; "
            "0: at every emission); its last revision goes out as soon as no label can change it."
        ),
    )
    min_group_count: int = Field(30, ge=1, description="Groups smaller than this are reported, not judged.")
    min_samples: int = Field(
        100,
        ge=1,
        description=(
            "Window rows with fewer samples than this (predictions; a feature's non-null values) say too_few_samples."
        ),
    )
    reference_first_n: int = Field(
        1000, ge=10, description="Without a reference profile, build one from a version's first N predictions."
    )
    checkpoint_s: float = Field(
        2.0,
        gt=0,
        description=(
            "Seconds between checkpoints (state + offsets) and result emission; at least 10 times the last "
            "checkpoint's duration."
        ),
    )
    detector_slice_s: float = Field(
        60.0,
        gt=0,
        description="Streaming detectors are fed in event-time slices this long, once the watermark passes them.",
    )
    adwin_delta: float = Field(0.002, gt=0, lt=1, description="ADWIN's confidence δ on the error indicator.")
    page_hinkley_threshold: float = Field(
        200.0,
        gt=0,
        description=(
            "Page-Hinkley's threshold λ on the cumulative deviation of the score mean (River's 50 fired about 5 "
            "times per 100k stable calibrated scores; 200 none in 300k, and a +0.1 shift within ~4k scores)."
        ),
    )
    page_hinkley_delta: float = Field(0.005, ge=0, description="Page-Hinkley's tolerated change δ per score.")
    page_hinkley_min_instances: int = Field(30, ge=1, description="Scores Page-Hinkley sees before it may fire.")

    @property
    def kept_s(self) -> float:
        """How long after a window's start its state is kept, in event time: ``window + horizon + grace``
        (labels count until its end plus the horizon; the grace lets those read a little late still join).
        The joins, the merger and the policy all drop a window at this point."""
        return self.window_s + self.horizon_s + self.grace_s

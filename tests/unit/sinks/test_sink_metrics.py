"""The sink's Prometheus metrics: the lag of each partition from librdkafka's statistics (absent while unknown,
never a made-up 0), the collector over the sink's stats, the endpoint, and compose, Prometheus and the docs in
step with them."""

from __future__ import annotations

import re
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from driftline.schemas.errors import ConfigError
from driftline.sinks.metrics import MetricsEndpoint, SinkCollector
from driftline.sinks.sink import SinkStats, partition_lag

ROOT = Path(__file__).resolve().parents[3]
UNKNOWN = -1001  # librdkafka's offset for "not known"


def partition(fetch_state: str = "active", **offsets: int) -> dict[str, Any]:
    """One partition of a librdkafka statistics report, every offset unknown unless given."""
    known = {"lo_offset": UNKNOWN, "hi_offset": UNKNOWN, "ls_offset": UNKNOWN, "committed_offset": UNKNOWN}
    return {"fetch_state": fetch_state, "desired": fetch_state != "none", **known, **offsets}


def test_lag_is_the_end_after_the_committed_position_and_absent_while_unknown() -> None:
    report = {
        "topics": {
            "t.predictions": {
                "partitions": {
                    "0": partition(lo_offset=0, hi_offset=15, ls_offset=15, committed_offset=10),
                    "1": partition(lo_offset=0, hi_offset=0, ls_offset=0),  # empty, never committed: nothing to read
                    "2": partition(lo_offset=4, hi_offset=9, ls_offset=9),  # not committed yet: read from the first
                    "3": partition(
                        lo_offset=50, hi_offset=80, ls_offset=80, committed_offset=20
                    ),  # retention passed it
                    "4": partition(lo_offset=0, hi_offset=12, ls_offset=10, committed_offset=10),  # open transaction
                    "5": partition("offset-wait"),  # assigned, its position still being looked up
                    "6": partition("none", lo_offset=0, hi_offset=30, ls_offset=30, committed_offset=3),  # revoked
                    "7": partition(committed_offset=5),  # no fetch answered yet: the end is unknown
                    "8": partition(hi_offset=5, ls_offset=5),  # neither a commit nor the first offset known
                    "-1": partition("none"),  # librdkafka's internal unassigned partition
                }
            },
            "t.feedback": {"partitions": {"0": partition(lo_offset=0, hi_offset=7, ls_offset=7, committed_offset=7)}},
        }
    }

    assert partition_lag(report) == {
        ("t.predictions", 0): 5,
        ("t.predictions", 1): 0,
        ("t.predictions", 2): 5,
        ("t.predictions", 3): 30,
        ("t.predictions", 4): 0,
        ("t.feedback", 0): 0,
    }
    assert partition_lag({"topics": {}}) == {} == partition_lag({})


def scraped(stats: SinkStats) -> dict[str, list[tuple[dict[str, str], float]]]:
    """What Prometheus reads from the collector over ``stats``: per sample name, its labels and values."""
    registry = CollectorRegistry()
    registry.register(SinkCollector(stats))
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_the_collector_reads_every_counter_and_the_lag_from_the_stats() -> None:
    stats = SinkStats(messages=42, batches=3, insert_retries=2, commit_failures=1)
    stats.rows.update({"predictions": 30, "feedback": 10, "dead_letters": 2})
    stats.dead_letters_by_reason.update({"not_json": 1, "wrong_shape": 1})

    before = scraped(stats)
    stats.lag = {("t.predictions", 1): 4, ("t.predictions", 0): 0}
    after = scraped(stats)

    assert before["driftline_sink_messages_total"] == [({}, 42.0)]
    assert before["driftline_sink_batches_total"] == [({}, 3.0)]
    assert before["driftline_sink_insert_retries_total"] == [({}, 2.0)]
    assert before["driftline_sink_commit_failures_total"] == [({}, 1.0)]
    assert before["driftline_sink_rows_total"] == [
        ({"table": "dead_letters"}, 2.0),
        ({"table": "feedback"}, 10.0),
        ({"table": "predictions"}, 30.0),
    ]
    assert before["driftline_sink_dead_letters_total"] == [
        ({"reason": "not_json"}, 1.0),
        ({"reason": "wrong_shape"}, 1.0),
    ]
    assert "driftline_sink_consumer_lag" not in before  # no report yet: unknown, not 0
    assert after["driftline_sink_consumer_lag"] == [
        ({"topic": "t.predictions", "partition": "0"}, 0.0),
        ({"topic": "t.predictions", "partition": "1"}, 4.0),
    ]


def sink_metric_names() -> set[str]:
    """The names Prometheus sees (counters with their ``_total``), from the collector over empty stats."""
    return {
        family.name + ("_total" if family.type == "counter" else "") for family in SinkCollector(SinkStats()).collect()
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_endpoint_serves_metrics_over_http_and_a_taken_port_names_the_setting() -> None:
    stats = SinkStats(messages=7)
    port = free_port()
    endpoint = MetricsEndpoint(stats, "127.0.0.1", port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            body = response.read().decode()
        with pytest.raises(ConfigError, match=rf"127\.0\.0\.1:{port}.*DRIFTLINE_SINK_METRICS_PORT"):
            MetricsEndpoint(stats, "127.0.0.1", port)
    finally:
        endpoint.close()
    assert "driftline_sink_messages_total 7.0" in body


def test_compose_and_prometheus_scrape_the_sink_and_the_docs_list_its_metrics() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    env = services["sink"]["environment"]
    assert env["DRIFTLINE_SINK_METRICS_HOST"] == "0.0.0.0"  # reachable from the prometheus container
    port = env["DRIFTLINE_SINK_METRICS_PORT"]
    assert services["sink"]["command"] == ["sink"] and "sink" in services["prometheus"]["depends_on"]

    config = yaml.safe_load((ROOT / "grafana" / "prometheus" / "prometheus.yml").read_text())
    targets = [
        f"{name}:{dns['port']}"
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for dns in job.get("dns_sd_configs", [])
        for name in dns["names"]
    ]
    assert f"sink:{port}" in targets

    docs = (ROOT / "docs" / "grafana.md").read_text()
    assert "no `/metrics`" not in docs
    listed = set(re.findall(r"\| `(driftline_sink_\w+)` \|", docs))
    assert listed == sink_metric_names()

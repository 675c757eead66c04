"""The sink's Prometheus metrics, served at ``http://<sink.metrics_host>:<sink.metrics_port>/metrics``.

Every value is read from the running sink's :class:`~driftline.sinks.sink.SinkStats` when Prometheus scrapes,
as the worker's ``/metrics`` reads its monitor. Counters count from the sink's start:

- ``driftline_sink_messages_total``: messages in the batches stored (every topic, dead letters included);
- ``driftline_sink_batches_total``: batches stored;
- ``driftline_sink_rows_total{table}``: rows inserted, per ClickHouse table;
- ``driftline_sink_dead_letters_total{reason}``: dead letters loaded from the dead-letters topic (the worker's
  and the sink's own), by reason;
- ``driftline_sink_insert_retries_total``: inserts retried while ClickHouse refused them;
- ``driftline_sink_commit_failures_total``: offset commits that failed after a stored batch;

and one gauge, ``driftline_sink_consumer_lag{topic,partition}``: messages of an assigned partition after the
sink's committed position (:func:`driftline.sinks.sink.partition_lag`), as librdkafka last reported it. A
partition not assigned, or whose offsets are not known yet, has no sample: its lag is unknown, never 0.

The endpoint is not the SQL endpoint's server: that one serves only while ClickHouse is embedded, and only on
127.0.0.1, while Prometheus scrapes a sink on any ClickHouse, from another host or container.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from driftline.schemas.errors import ConfigError

if TYPE_CHECKING:
    from driftline.sinks.sink import SinkStats


class SinkCollector(Collector):
    """The metrics above, read from ``stats`` at each scrape (while the sink thread updates it)."""

    def __init__(self, stats: SinkStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        yield CounterMetricFamily(
            "driftline_sink_messages", "Messages in the batches stored, every topic", value=stats.messages
        )
        yield CounterMetricFamily("driftline_sink_batches", "Batches stored", value=stats.batches)
        rows = CounterMetricFamily("driftline_sink_rows", "Rows inserted, per ClickHouse table", labels=["table"])
        for table, count in sorted(dict(stats.rows).items()):  # a copy: the sink thread may add a key meanwhile
            rows.add_metric([table], count)
        yield rows
        letters = CounterMetricFamily(
            "driftline_sink_dead_letters", "Dead letters loaded from their topic, by reason", labels=["reason"]
        )
        for reason, count in sorted(dict(stats.dead_letters_by_reason).items()):
            letters.add_metric([reason], count)
        yield letters
        yield CounterMetricFamily(
            "driftline_sink_insert_retries", "Inserts retried while ClickHouse refused them", value=stats.insert_retries
        )
        yield CounterMetricFamily(
            "driftline_sink_commit_failures",
            "Offset commits that failed after a stored batch",
            value=stats.commit_failures,
        )
        lag = GaugeMetricFamily(
            "driftline_sink_consumer_lag",
            "Messages after the sink's committed position, per assigned partition (absent while unknown)",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in sorted(stats.lag.items()):
            lag.add_metric([topic, str(partition)], behind)
        yield lag


class MetricsEndpoint:
    """Serve ``stats`` at ``http://host:port/metrics`` from a daemon thread until :meth:`close`.

    Raises :class:`ConfigError` naming the setting when the port cannot be bound.
    """

    def __init__(self, stats: SinkStats, host: str, port: int) -> None:
        registry = CollectorRegistry()
        registry.register(SinkCollector(stats))
        try:
            self._server, self._thread = start_http_server(port, host, registry)
        except OSError as error:
            raise ConfigError(
                f"cannot serve the sink's metrics on {host}:{port} ({error.strerror}); set "
                "DRIFTLINE_SINK_METRICS_PORT to a free port (DRIFTLINE_SINK_METRICS_HOST to an address of this host)"
            ) from None

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

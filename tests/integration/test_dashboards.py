"""The Grafana dashboards (grafana/, docker-compose.yml; docs/grafana.md) stay in step with the code.

There is no Grafana here, so this checks what can break: the provisioning (dashboards load, uids unique, every
panel has a target on a provisioned data source, the provider path is the compose mount, images and the plugin
pinned), Prometheus scrapes the worker and the panels read metrics the worker exposes, and every ClickHouse query
(panels, variables, annotations), its macros and variables expanded as Grafana and the plugin would, runs on the
rows of the shared demo run (tests/integration/test_demo.py) and returns rows with the columns the panel maps.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from driftline.demo.story import DEMO_DATABASE, MODEL_ID
from driftline.settings import Settings
from driftline.sinks.clickhouse import open_client
from driftline.streams.faust.pages import _StagesCollector
from tests.integration.test_demo import DemoRun, demo_run

__all__ = ["demo_run"]  # the shared run's fixture, imported so that this module uses the same run

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
CLICKHOUSE = "grafana-clickhouse-datasource"
PINNED_TAG = re.compile(r":v?\d+\.\d+\.\d+$")
TIME_PANELS = {"timeseries", "heatmap"}

# The macros the expander supports: the ClickHouse plugin's (expanded in its backend) and Grafana's variables.
MACROS = ("$__timeFilter(column)", "$__fromTime", "$__toTime")
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::(?P<format>\w+))?\}|\$(?P<bare>[A-Za-z]\w*)")
TIME_FILTER = re.compile(r"\$__timeFilter\(\s*([^()]+?)\s*\)")


def load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    return load(ROOT / "docker-compose.yml")


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: load(path) for path in DASHBOARD_FILES}


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((GRAFANA / "provisioning" / "datasources").glob("*.yaml")):
        for source in load(path)["datasources"]:
            assert source["uid"] not in found, f"data source uid {source['uid']} provisioned twice"
            found[source["uid"]] = source
    return found


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too; rows themselves are not panels with queries."""
    for panel in board.get("panels", []):
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


@dataclass
class Query:
    """One query of a dashboard: a panel's target, a query variable or an annotation."""

    board: str
    where: str  # "panel <title>", "variable <name>", "annotation <name>"
    kind: str  # panel type, "variable" or "annotation"
    datasource: dict[str, Any]
    target: dict[str, Any]
    panel: dict[str, Any] = field(default_factory=dict)  # the panel, or the variable's definition

    @property
    def sql(self) -> str:
        return str(self.target.get("rawSql") or self.target.get("query") or "")


def queries(name: str, board: dict[str, Any]) -> Iterator[Query]:
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            yield Query(name, f"variable {var['name']}", "variable", var["datasource"], {"query": var["query"]}, var)
    for note in board["annotations"]["list"]:
        if not note.get("builtIn"):
            yield Query(name, f"annotation {note['name']}", "annotation", note["datasource"], note["target"])
    for panel in panels(board):
        for target in panel.get("targets", []):
            source = target.get("datasource") or panel["datasource"]
            yield Query(name, f"panel {panel['title']}", panel["type"], source, target, panel)


def all_queries() -> list[Query]:
    return [query for name, board in dashboards().items() for query in queries(name, board)]


def plugin_version() -> str:
    plugins = compose()["services"]["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    match = re.fullmatch(rf"{CLICKHOUSE} (\d+\.\d+\.\d+)", plugins)
    assert match, f"GF_INSTALL_PLUGINS should pin the plugin as '{CLICKHOUSE} X.Y.Z', not {plugins!r}"
    return match.group(1)


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """A service's bind mounts: container path -> host path, relative to the repository."""
    found = {}
    for volume in service.get("volumes", []):
        host, container, *_ = volume.split(":")
        if host.startswith("./"):
            found[container] = host[2:]
    return found


def test_every_dashboard_loads_with_a_unique_uid_and_targets_on_provisioned_datasources() -> None:
    boards = dashboards()
    assert {"model-health.json", "drift.json", "fairness.json", "pipeline.json"} <= boards.keys()
    uids = Counter(board["uid"] for board in boards.values())
    assert all(uids) and max(uids.values()) == 1, f"dashboard uids missing or not unique: {uids}"
    sources = provisioned_datasources()
    version = plugin_version()
    for name, board in boards.items():
        assert board["uid"] and board["title"] and board["schemaVersion"] >= 39, name
        ids = Counter(panel["id"] for panel in panels(board))
        assert max(ids.values()) == 1, f"{name}: panel ids not unique: {ids}"
        defined = {var["name"] for var in board["templating"]["list"]}
        assert {"model", "version"} <= defined, name
        for panel in panels(board):
            assert panel.get("targets"), f"{name}: panel {panel['title']!r} has no target"
            assert panel["datasource"]["uid"] in sources, f"{name}: panel {panel['title']!r}: {panel['datasource']}"
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, f"{name}: {panel['title']!r}"
        for query in queries(name, board):
            source = query.datasource
            assert source["uid"] in sources, f"{name} {query.where}: {source} is not a provisioned data source"
            assert source["type"] == sources[source["uid"]]["type"], f"{name} {query.where}: {source}"
            if source["type"] == CLICKHOUSE:
                assert query.sql.strip(), f"{name} {query.where}: no SQL"
                used = {m["name"] or m["bare"] for m in VARIABLE.finditer(query.sql)}
                assert used <= defined, f"{name} {query.where}: undefined variables {used - defined}"
                if query.kind != "variable":
                    assert query.target["editorType"] == "sql" and query.target["pluginVersion"] == version
                    time_series = query.target["format"] == 0
                    assert time_series == (query.target["queryType"] == "timeseries"), f"{name} {query.where}"
            else:
                assert query.target.get("expr"), f"{name} {query.where}: no PromQL"


def test_provisioning_matches_the_compose_services_and_mounts() -> None:
    services = compose()["services"]
    assert {"grafana", "prometheus", "clickhouse", "worker"} <= services.keys()
    grafana, prometheus = services["grafana"], services["prometheus"]
    assert grafana["image"].startswith("grafana/grafana:") and PINNED_TAG.search(grafana["image"]), grafana["image"]
    assert prometheus["image"].startswith("prom/prometheus:") and PINNED_TAG.search(prometheus["image"])
    plugin_version()

    grafana_mounts = mounts(grafana)
    assert grafana_mounts.get("/etc/grafana/provisioning") == "grafana/provisioning"
    for container, host in [*grafana_mounts.items(), *mounts(prometheus).items()]:
        assert (ROOT / host).exists(), f"{container} mounts {host}, which does not exist"
    [provider_file] = (GRAFANA / "provisioning" / "dashboards").glob("*.yaml")
    [provider] = load(provider_file)["providers"]
    assert provider["type"] == "file"
    assert grafana_mounts.get(provider["options"]["path"]) == "grafana/dashboards", (
        f"the dashboards provider reads {provider['options']['path']}, compose mounts {grafana_mounts}"
    )
    home = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert home.startswith(provider["options"]["path"] + "/")
        assert (GRAFANA / "dashboards" / Path(home).name).is_file()

    # The ClickHouse data source is the compose ClickHouse server, with the sink's user, password and database.
    sources = provisioned_datasources()
    [clickhouse] = [source for source in sources.values() if source["type"] == CLICKHOUSE]
    server = services[clickhouse["jsonData"]["host"]]
    assert server["image"].startswith("clickhouse/clickhouse-server:")
    native = clickhouse["jsonData"].get("protocol", "native") == "native"
    assert clickhouse["jsonData"]["port"] == (9000 if native else 8123)
    assert clickhouse["jsonData"]["username"] == server["environment"]["CLICKHOUSE_USER"]
    assert clickhouse["secureJsonData"]["password"] == server["environment"]["CLICKHOUSE_PASSWORD"]
    sink_env = services["sink"]["environment"]
    assert sink_env["DRIFTLINE_CLICKHOUSE_DSN"].startswith(("http://", "https://"))
    assert f"@{clickhouse['jsonData']['host']}:" in sink_env["DRIFTLINE_CLICKHOUSE_DSN"]
    database = sink_env.get("DRIFTLINE_CLICKHOUSE_DATABASE", Settings().clickhouse.database)
    assert clickhouse["jsonData"]["defaultDatabase"] == database
    [prom_source] = [source for source in sources.values() if source["type"] == "prometheus"]
    assert prom_source["url"] == "http://prometheus:9090"
    assert any(port.endswith(":9090") for port in prometheus["ports"])

    # The dashboards' database variable offers the deployment's database (default) and the demo's.
    for name, board in dashboards().items():
        [var] = [var for var in board["templating"]["list"] if var["name"] == "database"]
        offered = [option["value"] for option in var["options"]]
        assert var["current"]["value"] == database and DEMO_DATABASE in offered, name
        assert var["query"].split(",") == offered, name


def exposed_metrics() -> set[str]:
    """The metric names the worker's /metrics page serves (counters with their ``_total`` suffix), read from
    its collector over empty worker stages."""
    stages = SimpleNamespace(
        counts=Counter(), mergers={}, joins={}, offsets={}, last_checkpoint=time.monotonic(), completeness=list
    )
    app = SimpleNamespace(consumer=SimpleNamespace(assignment=set))
    names = set()
    for family in _StagesCollector(stages, app, []).collect():
        names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def test_prometheus_scrapes_the_worker_and_the_panels_read_metrics_it_exposes() -> None:
    services = compose()["services"]
    env = services["worker"]["environment"]
    config_path = mounts(services["prometheus"])["/etc/prometheus/prometheus.yml"]
    config = load(ROOT / config_path)
    targets = []
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", []):
            targets += static["targets"]
        for dns in job.get("dns_sd_configs", []):
            targets += [f"{name}:{dns['port']}" for name in dns["names"]]
    assert f"worker:{env['DRIFTLINE_WORKER_WEB_PORT']}" in targets
    assert env["DRIFTLINE_WORKER_WEB_HOST"] == "0.0.0.0"  # reachable from the prometheus container

    exposed = exposed_metrics()
    assert {"driftline_events_in_total", "driftline_consumer_lag", "driftline_checkpoint_age_seconds"} <= exposed
    used = set()
    for query in all_queries():
        if query.datasource["type"] == "prometheus":
            used |= set(re.findall(r"\bdriftline_\w+", query.target["expr"]))
    assert used and used <= exposed, f"panels read metrics the worker does not expose: {used - exposed}"


def expand(sql: str, variables: dict[str, list[str]], start: datetime, end: datetime) -> str:
    """``sql`` as ClickHouse receives it: Grafana's variables (``${name}``, ``${name:singlequote}``), then the
    plugin's macros (:data:`MACROS`); a ``$__`` macro or a variable left over fails the test."""

    def variable(match: re.Match[str]) -> str:
        name = match["name"] or match["bare"]
        values = variables[name]
        if match["format"] == "singlequote":
            return ",".join("'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'" for value in values)
        assert match["format"] is None, f"unsupported variable format in {match[0]}"
        assert len(values) == 1, f"{match[0]} has several values: use ${{{name}:singlequote}} in IN (...)"
        return values[0]

    expanded = VARIABLE.sub(variable, sql)
    start_s, end_s = int(start.timestamp()), int(end.timestamp())
    expanded = TIME_FILTER.sub(
        lambda m: f"{m[1]} >= toDateTime({start_s}) AND {m[1]} <= toDateTime({end_s})",
        expanded,
    )
    expanded = re.sub(r"\$__fromTime\b", f"toDateTime({start_s})", expanded)
    expanded = re.sub(r"\$__toTime\b", f"toDateTime({end_s})", expanded)
    left = re.findall(r"\$\S*", expanded)
    assert not left, f"not expanded: {left} (supported: {', '.join(MACROS)})"
    return expanded


def mapped_columns(query: Query) -> tuple[set[str], list[str]]:
    """The columns a query's panel maps by name, and the name patterns it maps by regular expression."""
    names, patterns = set(), []
    if query.kind in TIME_PANELS or query.target.get("format") == 0:
        names.add("time")
    if query.kind == "annotation":
        names |= {"time", "text"}
    for override in query.panel.get("fieldConfig", {}).get("overrides", []):
        matcher = override["matcher"]
        if matcher["id"] == "byName":
            names.add(matcher["options"])
        elif matcher["id"] == "byRegexp":
            patterns.append(matcher["options"])
    for sort in query.panel.get("options", {}).get("sortBy", []):
        names.add(sort["displayName"])
    return names, patterns


@pytest.mark.integration
def test_every_clickhouse_query_returns_rows_with_its_mapped_columns_on_the_demo_run(demo_run: DemoRun) -> None:
    settings = demo_run.outcome.settings
    assert settings.clickhouse.database == DEMO_DATABASE
    client = open_client(settings.clickhouse_dsn, DEMO_DATABASE)
    try:
        [(first, last)] = client.query(
            "SELECT min(window_start), max(window_end) FROM performance_windows_latest"
        ).result_rows
        start, end = first - timedelta(hours=1), last + timedelta(hours=1)
        counts: list[tuple[str, str, int, str]] = []
        for name, board in dashboards().items():
            variables: dict[str, list[str]] = {"database": [DEMO_DATABASE]}
            for query in queries(name, board):
                if query.datasource["type"] != CLICKHOUSE:
                    counts.append((name, query.where, -1, "Prometheus: " + query.target["expr"]))
                    continue
                sql = expand(query.sql, variables, start, end)
                result = client.query(sql)
                rows, columns = result.result_rows, list(result.column_names)
                assert rows, f"{name} {query.where}: no rows for\n{sql}"
                if query.kind == "variable":  # the demo's model, every value of a multi-value variable
                    values = [str(row[0]) for row in rows]
                    var = query.panel
                    chosen = [MODEL_ID] if var["name"] == "model" else values if var["multi"] else values[:1]
                    assert set(chosen) <= set(values), f"{name} {query.where}: {values}"
                    variables[var["name"]] = chosen
                names, patterns = mapped_columns(query)
                assert names <= set(columns), f"{name} {query.where}: maps {names - set(columns)}, has {columns}"
                for pattern in patterns:
                    assert any(re.search(pattern, column) for column in columns), f"{name} {query.where}: {pattern}"
                if "time" in names:
                    time_type = result.column_types[columns.index("time")].name
                    assert time_type.startswith("DateTime"), f"{name} {query.where}: time is {time_type}"
                if query.kind in TIME_PANELS:
                    numeric = [t.name for c, t in zip(columns, result.column_types, strict=True) if c != "time"]
                    assert any(re.search(r"Int|Float", t) for t in numeric), f"{name} {query.where}: no values"
                counts.append((name, query.where, len(rows), ", ".join(columns)))
    finally:
        client.close()

    width = max(len(f"{board} {where}") for board, where, _, _ in counts)
    print(f"\nDashboard queries on the demo run ({DEMO_DATABASE}, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC)")
    print(f"{'dashboard / query':<{width}}  {'rows':>5}  columns")
    for board, where, rows, columns in counts:
        shown = "  n/a" if rows < 0 else f"{rows:>5}"
        print(f"{f'{board} {where}':<{width}}  {shown}  {columns}")

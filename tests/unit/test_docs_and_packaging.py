"""The README and docs/, docker-compose.yml and the CLI stay in step with the code."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from driftline.cli import app
from driftline.devtools.docs import FILES, render
from driftline.schemas.tables import ALL_TABLES
from driftline.settings_report import reference_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_readme_generated_blocks_are_current() -> None:
    """The doc files that hold the generated blocks (settings, tables) are current."""
    for name, blocks in FILES.items():
        text = (ROOT / name).read_text()
        assert render(text, blocks) == text, f"{name} is out of step; run: make docs"

    tables = (ROOT / "docs" / "tables.md").read_text()
    for table in ALL_TABLES:
        assert f"#### `{table.name}`" in tables
    assert "`DRIFTLINE_KAFKA_BOOTSTRAP`" in (ROOT / "docs" / "configuration.md").read_text()


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


MARKDOWN_LINK = re.compile(r"\]\(([^()\s]+)\)")


def test_readme_is_short_and_every_relative_link_resolves() -> None:
    readme = ROOT / "README.md"
    assert len(readme.read_text().splitlines()) <= 250, "the README is the user's page: move detail to docs/"

    for page in [readme, *sorted((ROOT / "docs").glob("*.md"))]:
        for target in MARKDOWN_LINK.findall(page.read_text()):
            if target.startswith("#") or re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # an anchor on the same page, or a URL (https:, mailto:)
            path = target.split("#", 1)[0]
            assert (page.parent / path).exists(), f"{page.relative_to(ROOT)} links to {target}: no such file"


def _settings_variables() -> set[str]:
    return set(re.findall(r"`(DRIFTLINE_[A-Z_]+)`", reference_markdown()))


def test_docker_compose_names_only_settings_that_exist_and_commands_the_cli_has() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "clickhouse", "worker", "sink"} <= services.keys()

    known = _settings_variables()
    commands = {command.name or command.callback.__name__ for command in app.registered_commands}
    commands |= {group.name for group in app.registered_groups}
    for name, service in services.items():
        if service.get("build"):
            variables = set(service.get("environment", {}))
            assert variables <= known, f"{name} sets unknown settings {variables - known}"
            assert service["command"][0] in commands, f"{name} runs an unknown command {service['command']}"


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["kafka"],
        ["kafka", "start"],
        ["topics", "check"],
        ["config", "show"],
        ["worker"],
        ["demo"],
        ["version"],
        ["sink"],
        ["sql"],
        ["schemas", "export"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])

    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_config_show_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_CLICKHOUSE_PASSWORD", "hunter2")
    monkeypatch.setenv("DRIFTLINE_CLICKHOUSE_DSN", "http://analyst:s3cret@db:8123")

    result = CliRunner().invoke(app, ["config", "show", "--json"])

    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output and "s3cret" not in result.output
    assert "analyst:****@db:8123" in result.output


def test_the_dockerfile_copies_every_folder_of_the_package_map() -> None:
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    folders = {path.split("/")[0] for path in package_dir.values()}
    copied = set(re.findall(r"^COPY (\S+) \./\1/?$", (ROOT / "Dockerfile").read_text(), re.M))

    assert folders == {"driftline", "schemas", "sinks", "streams"}
    assert folders <= copied

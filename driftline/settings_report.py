"""Reports on the settings: where each setting in force comes from (:func:`setting_sources`, for ``driftline
config show``) and the reference of every setting (:func:`reference_markdown`, in docs/configuration.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_settings import EnvSettingsSource, TomlConfigSettingsSource

from driftline.schemas.model_contracts import ModelContract
from driftline.settings import Settings, config_file_in_force, env_var_name, settings_class

DEFAULT_SOURCE = "default"


def setting_sources(config_file: Path | None = None) -> dict[str, str]:
    """Where each setting in force comes from, keyed by its name as ``driftline config show`` prints it: a
    top-level setting (``data_dir``) or a section's field (``kafka.partitions``), every one of them, in order.

    A source is ``env <VARIABLE>``: the variable that set it as the process sees it (``DRIFTLINE_KAFKA_PARTITIONS``,
    or the section's JSON object ``DRIFTLINE_KAFKA``); ``file <path>``: the TOML file, found as
    :func:`~driftline.settings.load_settings` finds it (``config_file``, ``DRIFTLINE_CONFIG``,
    ``./driftline.toml``); or ``default``. A setting merged from parts of several sources (a policy rule with its
    threshold from a variable and its features from the file) names each that still shows in it, highest
    precedence first, joined by ``", "``; a source whose every part is overridden is not named. The answer comes
    from the same pydantic-settings sources that :func:`~driftline.settings.load_settings` merges, so the two
    cannot disagree; it holds no value, so no secret. Call it once the settings have loaded.
    """
    config_file = config_file_in_force(config_file)
    settings_cls = settings_class(config_file)
    provided: list[tuple[str | None, dict[str, Any]]] = [(None, EnvSettingsSource(settings_cls)())]
    if config_file is not None:
        provided.append((f"file {config_file}", TomlConfigSettingsSource(settings_cls)()))
    sources: dict[str, str] = {}
    for loc in _setting_locations():
        found: list[str] = []
        above: set[tuple[str, ...]] = set()  # the paths the sources of higher precedence set
        for label, values in provided:
            parts = _parts(values, loc)
            if any(not _under(part, above) for part in parts):
                found.append(label or _variable_that_set(loc))
            above |= parts
        sources[".".join(loc)] = ", ".join(found) or DEFAULT_SOURCE
    return sources


def _setting_locations() -> list[tuple[str, ...]]:
    """``(section, field)`` for every field of a section, ``(name,)`` for a top-level setting."""
    locations: list[tuple[str, ...]] = []
    for name, field in Settings.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            locations.extend((name, sub) for sub in field.annotation.model_fields)
        else:
            locations.append((name,))
    return locations


def _parts(values: dict[str, Any], loc: tuple[str, ...]) -> set[tuple[str, ...]]:
    """The paths of the values a source's nested ``values`` give at or under ``loc`` (none: it does not set it)."""
    value: Any = values
    for key in loc:
        if not isinstance(value, dict) or key not in value:
            return set()
        value = value[key]
    return _leaves(value, loc)


def _leaves(value: Any, path: tuple[str, ...]) -> set[tuple[str, ...]]:
    """A mapping merges key by key with the other sources' (pydantic-settings' deep update); anything else, an
    empty mapping too, replaces whatever lower sources give under its path."""
    if isinstance(value, dict) and value:
        return set().union(*(_leaves(sub, (*path, str(key))) for key, sub in value.items()))
    return {path}


def _under(path: tuple[str, ...], above: set[tuple[str, ...]]) -> bool:
    """True when a value at ``path`` is overridden: a higher source sets ``path`` or a path above it."""
    return any(path[: len(higher)] == higher for higher in above)


def _variable_that_set(loc: tuple[str, ...]) -> str:
    """``env <name>`` of the variable that set ``loc``: its own, else its section's JSON object (names match
    regardless of case, as pydantic-settings matches them)."""
    for wanted in (env_var_name(loc), env_var_name(loc[:1])):
        for name in os.environ:
            if name.upper() == wanted:
                return f"env {name}"
    return f"env {env_var_name(loc)}"


def reference_markdown() -> str:
    """The settings reference of docs/configuration.md, generated from the settings classes' fields."""
    lines = ["| variable | TOML | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for sub_name, sub_field in annotation.model_fields.items():
                lines.append(_reference_row((name, sub_name), f"[{name}] {sub_name}", sub_field))
        elif name == "models":  # a table per model id: TOML only
            for sub_name, sub_field in ModelContract.model_fields.items():
                row = _reference_row((name, sub_name), f"[{name}.<model_id>] {sub_name}", sub_field)
                lines.append(row.replace(f"`{env_var_name((name, sub_name))}`", "(TOML only)"))
        else:
            lines.append(_reference_row((name,), name, field))
    return "\n".join(lines)


def _reference_row(loc: tuple[str, ...], toml_key: str, field: Any) -> str:
    default = field.get_default(call_default_factory=True)
    if isinstance(default, Path) and default.is_absolute():
        default = str(default).replace(str(Path.home()), "~")
    shown = "(none)" if default is None else f"`{default}`"
    return f"| `{env_var_name(loc)}` | `{toml_key}` | {shown} | {field.description or ''} |"

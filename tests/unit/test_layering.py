"""The layers import only downwards: the contracts import nothing else of driftline, the stream core no Kafka
client, no Faust, no pickle and no settings but its own section (in the contracts), and the sink nothing of the
stream processing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported(folder: str) -> dict[str, set[str]]:
    """Per Python file below ``folder`` (as ``folder/...``), every module it imports, at any depth of the file."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        modules: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules.add(node.module)
        found[str(path.relative_to(ROOT))] = modules
    return found


def offending(folder: str, refused: tuple[str, ...], allowed: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """The imports below ``folder`` of a module in ``refused`` (or below one) but in none of ``allowed``."""

    def within(module: str, roots: tuple[str, ...]) -> bool:
        return any(module == root or module.startswith(root + ".") for root in roots)

    wrong = {
        path: sorted(m for m in modules if within(m, refused) and not within(m, allowed))
        for path, modules in imported(folder).items()
    }
    return {path: modules for path, modules in wrong.items() if modules}


@pytest.mark.parametrize(
    ("folder", "refused", "allowed"),
    [
        ("schemas", ("driftline",), ("driftline.schemas",)),
        ("streams/core", ("faust", "confluent_kafka", "aiokafka", "pickle", "driftline.settings"), ()),
        ("sinks", ("driftline.streams",), ()),
    ],
)
def test_a_layer_imports_nothing_above_it(folder: str, refused: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    assert imported(folder), f"no Python file found below {folder}"
    assert offending(folder, refused, allowed) == {}


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "layer").mkdir()
    (tmp_path / "layer" / "lazy.py").write_text("def later():\n    import pickle\n    return pickle\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)

    assert offending("layer", ("pickle",)) == {"layer/lazy.py": ["pickle"]}

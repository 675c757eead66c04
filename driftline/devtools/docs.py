"""The generated blocks of the documentation, rendered from the code.

Contract: each file of :data:`FILES` (a path relative to the repository's root) holds, for each block it
lists, one ``<!-- name:start ... -->`` ... ``<!-- name:end -->`` pair; :func:`render` replaces what lies
between the two markers with the block's current content and leaves everything else as it is. The blocks are
the settings reference (from the settings classes) in ``docs/configuration.md`` and the table reference (from
:mod:`driftline.schemas.tables`) in ``docs/tables.md``. ``make docs`` (``python -m driftline.devtools.docs``, run from
the root) rewrites the files; a test checks they are current.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

from driftline.schemas.tables import reference_markdown as tables_markdown
from driftline.settings_report import reference_markdown as settings_markdown

BLOCKS: dict[str, Callable[[], str]] = {
    "settings": lambda: settings_markdown() + "\n",
    "tables": tables_markdown,
}

FILES: dict[str, tuple[str, ...]] = {
    "docs/configuration.md": ("settings",),
    "docs/tables.md": ("tables",),
}


def render(text: str, blocks: Iterable[str]) -> str:
    """``text`` with each of ``blocks`` replaced by its current content; ValueError if one is missing."""
    for name in blocks:
        pattern = re.compile(rf"(<!-- {name}:start[^>]*-->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"no <!-- {name}:start --> ... <!-- {name}:end --> block")
        text = pattern.sub(rf"\g<1>{BLOCKS[name]().replace(chr(92), chr(92) * 2)}\g<2>", text)
    return text


def sync(root: Path) -> list[str]:
    """Rewrite the generated blocks of every file of :data:`FILES` under ``root``; the files that changed."""
    changed = []
    for name, blocks in FILES.items():
        path = root / name
        current = path.read_text()
        fresh = render(current, blocks)
        if fresh != current:
            path.write_text(fresh)
            changed.append(name)
    return changed


if __name__ == "__main__":
    changed = sync(Path("."))
    print(f"updated: {', '.join(changed)}" if changed else f"already current: {', '.join(FILES)}")

"""The README's generated blocks: the configuration table (from the settings classes) and the table
reference (from :mod:`driftline.schemas.tables`). ``make docs`` rewrites them; a test checks they are current.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from driftline.schemas.tables import reference_markdown as tables_markdown
from driftline.settings import reference_markdown as settings_markdown

BLOCKS: dict[str, Callable[[], str]] = {
    "settings": lambda: settings_markdown() + "\n",
    "tables": tables_markdown,
}


def render(text: str) -> str:
    """``text`` with every generated block replaced by its current content."""
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- {name}:start[^>]*-->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README has no <!-- {name}:start --> ... <!-- {name}:end --> block")
        text = pattern.sub(rf"\g<1>{make().replace(chr(92), chr(92) * 2)}\g<2>", text)
    return text


def sync(path: Path) -> bool:
    """Rewrite the generated blocks of ``path``; True if anything changed."""
    current = path.read_text()
    fresh = render(current)
    if fresh != current:
        path.write_text(fresh)
    return fresh != current


if __name__ == "__main__":
    print("README.md updated" if sync(Path("README.md")) else "README.md already current")

"""``--profile``: the worker (d) on both shapes under py-spy, its profiles written to bench/profiles/ (speedscope
JSON: open them at speedscope.app or with ``npx speedscope``), and the top costs printed.

py-spy starts the worker itself (attaching to a running process needs ptrace rights that sandboxes often
withhold) and samples it 100 times a second from start to stop; the rates it shows are slowed by sampling and
are not benchmark figures, so this mode writes no history line.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.config import BenchConfig
from bench.processes import ROOT, RunError
from bench.run import RUN_ORDER, session

PROFILES = Path(__file__).with_name("profiles")
TOP = 15


def profile(config: BenchConfig, console: Console) -> int:
    """Profile the worker on each shape; return 1 if a run failed."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    failed = False
    PROFILES.mkdir(exist_ok=True)
    with session(console) as run:
        for shape in RUN_ORDER:
            stream = run.produce(config, shape)
            path = PROFILES / f"worker-{shape}-{stamp}.speedscope.json"
            try:
                measured = run.run("d", config, stream, profile_to=path)
            except RunError as failure:
                console.print(f"[red]failed:[/red] {failure}")
                run.keep_logs = failed = True
                continue
            console.print(f"worker on {shape}: {measured.events_per_s:,.0f} events/s under py-spy; profile: {path}")
            console.print(top_costs(path, f"worker on {shape}: where the time goes"))
    return 1 if failed else 0


def top_costs(path: Path, title: str) -> Table:
    """The functions with the most samples: on the stack's top (self) and anywhere on it (total, our code)."""
    own, total, samples = _tally(path)
    table = Table(
        title=title,
        title_justify="left",
        caption="self: the function on top of the Python stack (C code it calls, e.g. pickle, counts as its own); "
        "select and poll on top are mostly waiting",
        caption_justify="left",
    )
    table.add_column("self %", justify="right")
    table.add_column("function (self)")
    table.add_column("total %", justify="right")
    table.add_column("function of driftline (self + callees)")
    ours = [(name, n) for name, n in total.most_common() if _is_ours(name)]
    for (self_name, self_n), (total_name, total_n) in zip(own.most_common(TOP), ours[:TOP], strict=False):
        table.add_row(f"{100 * self_n / samples:.1f}", self_name, f"{100 * total_n / samples:.1f}", total_name)
    return table


def _tally(path: Path) -> tuple[Counter[str], Counter[str], float]:
    """Samples per function (name and file, all lines together) from a py-spy speedscope file, all threads."""
    data = json.loads(path.read_text())
    names = [_short(frame) for frame in data["shared"]["frames"]]
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0.0
    for thread in data["profiles"]:
        for stack, weight in zip(thread["samples"], thread["weights"], strict=True):
            samples += weight
            if stack:
                own[names[stack[-1]]] += weight
            for name in {names[i] for i in stack}:
                total[name] += weight
    return own, total, samples or 1.0


def _short(frame: dict[str, object]) -> str:
    file = str(frame.get("file", ""))
    for marker in ("site-packages/", f"{ROOT}/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{frame.get('name')} ({file})"


def _is_ours(name: str) -> bool:
    """Functions of the worker's code, leaving out module imports and the command line's entry chain."""
    entry = name.startswith("<module>") or any(f"(driftline/{m}.py)" in name for m in ("cli", "pipeline"))
    return not entry and any(f"({folder}/" in name for folder in ("streams", "schemas", "sinks", "driftline"))

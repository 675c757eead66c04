"""Processes the harness starts: each tracked until it ends, so none outlives the run (also on Ctrl-C), and
the measured programs among them read through their report lines (:mod:`bench.measure`)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.measure import MARK, Measurement

ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_S = 30.0
_live: set[subprocess.Popen[bytes]] = set()


class RunError(Exception):
    """A measured program failed: it exited with an error, stalled or missed part of the stream."""


def start(command: list[str], log: Path, env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen[bytes]:
    """Start ``command`` (stderr, and stdout unless redirected, into ``log``) with ``env`` added to ours."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env={**variables, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=popen.pop("stdout", out),
            stderr=out,
            **popen,
        )
    _live.add(process)
    return process


def stop(process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM, then SIGKILL after ``timeout_s``; return the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _live.discard(process)
    return process.returncode


def stop_all() -> None:
    """End every process the harness started that still runs."""
    for process in list(_live):
        stop(process, timeout_s=10)


class Program:
    """``python -m <module> <spec as JSON>`` started from the repository root, its report lines queued as
    they come (``None`` once its output closes)."""

    def __init__(self, module: str, spec: dict[str, Any], log: Path) -> None:
        self.module, self.log = module, log
        self.process = start([sys.executable, "-m", module, json.dumps(spec)], log, stdout=subprocess.PIPE, cwd=ROOT)
        self.reports: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            text = raw.decode("utf-8", "replace")
            if text.startswith(MARK):
                self.reports.put(json.loads(text[len(MARK) :]))
        self.reports.put(None)

    def next_report(self, stall_s: float) -> dict[str, Any]:
        """The next report line; :class:`RunError` if the program exits first or says nothing for ``stall_s``."""
        try:
            line = self.reports.get(timeout=stall_s)
        except queue.Empty:
            raise RunError(f"{self.module} reported nothing for {stall_s:.0f} s (log: {self.log})") from None
        if line is None:
            raise RunError(f"{self.module} exited with code {self.process.wait()} (log: {self.log})")
        return line


def measure(
    module: str, spec: dict[str, Any], log: Path, progress: Callable[[int], None], stall_s: float = 120.0
) -> Measurement:
    """Run a measured program (``python -m <module> <spec>``) to its end and return what it reports.

    Raises :class:`RunError` when it exits without a result, or reports nothing for ``stall_s`` seconds.
    """
    program = Program(module, spec, log)
    try:
        while True:
            line = program.next_report(stall_s)
            if "progress" in line:
                progress(line["progress"])
            if "result" in line:
                progress(line["result"]["events"])
                return Measurement(**line["result"])
    finally:
        stop(program.process)

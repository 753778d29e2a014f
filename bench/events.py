"""The events every benchmark runs: the broadcast stack and synthetic events of 8, 32 and 128
clusters, plus the two helpers the scripts share (a timed child process, a small table)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import synthetic

ROOT = synthetic.ROOT
PYTHON = sys.executable
SYNTHETIC_CLUSTERS = (8, 32, 128)


def stacks(directory: Path, sizes: Sequence[int] = SYNTHETIC_CLUSTERS) -> dict[str, Path]:
    """Event name -> stack file; the synthetic ones are generated into `directory`."""
    out = {"broadcast": synthetic.BROADCAST}
    for n in sizes:
        out[f"synthetic-{n}"] = synthetic.write_stack(n, directory)
    return out


@dataclass(frozen=True)
class Run:
    seconds: float
    cpu_seconds: float      # user + system of the process: what load on other cores does not inflate
    peak_rss_mib: float
    stdout: str


def timed(argv: Sequence[str], stdout: Path) -> Run:
    """Run a whole process; wall time and its own peak RSS (os.wait4, not RUSAGE_CHILDREN, which
    is the maximum over every child so far). stdout goes to a file so a pipe never blocks it."""
    with stdout.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = stdout.read_text()
    if proc.returncode not in (0, 1):  # 1: a check failed (e.g. a model short), still timed
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{text}")
    return Run(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, text)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned first column, right-aligned figures."""
    cells = [list(header)] + [list(r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

"""`peaknight simulate STACK [--plot FILE.png] [--step SECONDS]`: replay the night, judge it by the SLO.

Exit 1 when any model's unmet tokens exceed the stack's `slo.unmetTokensPct`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from peaknight.cli import errors
from peaknight.spec import config
from peaknight.builders import event
from peaknight.sim import plot as night_plot
from peaknight.sim import simulator
from peaknight.sim.simulator import ModelResult


def table(results: list[ModelResult], slo_pct: float) -> str:
    rows = [("model", "clusters", "unmet tokens", "unmet min", "GPU-hours", "oracle GPU-h", "ratio", "")]
    for r in results:
        rows.append((r.model, str(r.clusters), f"{r.unmet_pct:.3f}%", str(len(r.unmet_minutes)),
                     f"{r.gpu_hours:,.0f}", f"{r.oracle_gpu_hours:,.0f}", f"{r.oracle_ratio:.2f}",
                     "ok" if r.unmet_pct <= slo_pct else "OVER SLO"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    loaded = config.load_stack(args.stack)
    spec = loaded.spec
    if args.step <= 0:
        raise config.ConfigError([config.Problem("--step", "--step", "a positive number of seconds", str(args.step))])
    if args.plot:
        errors.writable_file(Path(args.plot), "--plot")  # before the night is replayed, not after
    objects = event.build(spec)
    results = simulator.simulate(spec, objects, args.step)
    print(f"simulated night of stack '{loaded.name}' ({loaded.path}), {args.step:g} s steps, "
          f"{spec.event.window.start:%Y-%m-%d %H:%M} to {spec.event.window.end:%H:%M} {spec.event.time_zone}")
    print(table(results, spec.slo.unmet_tokens_pct))
    print(f"SLO: at most {spec.slo.unmet_tokens_pct:g}% of tokens unmet (a token unmet = it would wait past the "
          f"{spec.slo.ttft_p99_seconds:g} s TTFT SLO); oracle = ready exactly when needed at target utilisation")
    if args.plot:
        night_plot.write(spec, results, Path(args.plot), objects.plan)
        print(f"plot written to {args.plot}")
    return 1 if any(r.unmet_pct > spec.slo.unmet_tokens_pct for r in results) else 0


def add_parser(sub: argparse._SubParsersAction, stack_help: str) -> None:
    s = sub.add_parser("simulate", help="replay the night through the autoscalers; exit 1 if unmet demand "
                                        "exceeds the SLO")
    s.add_argument("stack", help=stack_help)
    s.add_argument("--plot", help="write demand, ready capacity and replicas through the night to this PNG")
    s.add_argument("--step", type=float, default=10.0, help="simulation step in seconds (default 10)")

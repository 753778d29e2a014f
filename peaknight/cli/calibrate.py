"""`peaknight calibrate STACK --results DIR`: the rehearsal's measurements as profile rows, and what
they change in the broadcast plan; `--write` puts the rows in the calibration file the planner
reads above the shipped profiles (stacks/calibration.yaml, beside the stack files).

Exit codes: 0 rows derived (and written with --write); 1 a model's results had no stage that met
the objective (nothing is written); 2 bad input: a missing, partial or malformed results file,
one line each naming the file and what was expected.
"""
from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

import yaml

from peaknight.builders import loadreplay
from peaknight.cli import errors
from peaknight.cli.errors import CHECK_FAILED, OK
from peaknight.plan import calibration, loadresults
from peaknight.plan import capacity
from peaknight.plan.capacity import mixed_tps
from peaknight.plan.units import RATE_UNIT
from peaknight.review import rehearsal
from peaknight.spec import config, profiles

HEADER = ("# Throughput rows measured in a rehearsal by `peaknight calibrate --write`: the planner reads them\n"
          "# above peaknight/data/profiles.yaml (same fields; `measured` says where and when). Delete a row to\n"
          "# go back to the shipped figure.\n")


def add_parser(sub: Any, stack_help: str) -> None:
    c = sub.add_parser("calibrate", help="derive per-replica throughput from the rehearsal's load replay results "
                                         "and show what it changes in the broadcast plan")
    c.add_argument("stack", help=stack_help + " (the rehearsal that was measured)")
    c.add_argument("--results", required=True, help="DIR/<cluster>/<model>/pod-<i>/ of inference-perf reports "
                                                    "(docs/operations.md)")
    c.add_argument("--replicas", type=int, help="replicas that served every stage, where DIR/<cluster>/"
                                                "prometheus.json does not say")
    c.add_argument("--broadcast", default="broadcast", help="the stack whose plan the rows change (default broadcast)")
    c.add_argument("--write", action="store_true", help="write the rows to calibration.yaml beside the stack file")
    c.add_argument("--plot", help="write the rehearsal report's plot (PNG): per model, demand replayed and "
                                  "throughput achieved, replicas, moments")


def run(args: argparse.Namespace) -> int:
    if args.replicas is not None and not 1 <= args.replicas <= loadresults.MAX_REPLICAS:
        raise config.ConfigError([config.Problem("(command line)", "--replicas", "a whole number from 1 to "
                                                 f"{loadresults.MAX_REPLICAS:,}", str(args.replicas))])
    loaded = config.load_stack(args.stack)
    target = loaded.path.parent / profiles.CALIBRATION_FILE
    if args.write:
        errors.writable_file(target, "--write")
    if args.plot:
        errors.writable_file(Path(args.plot), "--plot")
    measured = loadresults.read(loaded.spec, Path(args.results), args.replicas)
    rows, missed, skipped = calibration.rows(loaded.spec, loaded.name, measured)
    slo = loaded.spec.slo
    print(f"calibration from stack '{loaded.name}' ({loaded.path}), results {args.results} "
          f"({loadreplay.TOOL} {loadreplay.TOOL_VERSION}); objective TTFT p99 <= {slo.ttft_p99_seconds:g} s, "
          f"ITL p99 <= {slo.itl_p99_seconds:g} s, no failed request")
    print("")
    print(_measured_table(loaded.spec, measured))
    reports = rehearsal.report(loaded.spec, capacity.plan(loaded.spec), measured)
    print("")
    print(f"rehearsal report (per model, all clusters measured; {RATE_UNIT}):")
    print(rehearsal.table(reports))
    if args.plot:
        rehearsal.write_plot(loaded.spec, reports, Path(args.plot))
        print(f"plot: {args.plot}")
    for results in skipped:
        print(f"NOT CALIBRATED: {results.cluster}/{results.model} is disaggregated: one replica's mixed rate does not "
              "separate its prefill and decode groups (set their rows by hand, from the phases' own metrics)")
    for results in missed:
        print(f"NO STAGE MET THE OBJECTIVE: {results.cluster}/{results.model} ({results.source}): nothing to calibrate")
    if rows:
        print("")
        print("profile rows (tokens/s per replica; old: what the plan uses now, new: measured):")
        for row in rows:
            print(_row_lines(row))
        # A stack name is looked up beside the measured stack, whose calibration file it shares.
        sibling = config.resolve_stack_path(args.broadcast)
        if sibling.parent == config.stacks_dir():
            sibling = loaded.path.parent / sibling.name
        broadcast = config.load_stack(str(sibling))
        deltas, unfit = calibration.plan_delta(broadcast.spec, rows)
        print("")
        print(_delta_table(broadcast.name, deltas))
        for line in unfit:
            print(f"DOES NOT FIT: {line}")
        if unfit:
            if args.write:
                print("not written: with these rows the broadcast plan does not fit its clusters (split them, or "
                      "check the measurement)")
            return CHECK_FAILED
    if missed or not rows:
        if args.write:
            print("not written: every measured model needs a stage that met the objective")
        return CHECK_FAILED
    if args.write:
        count = _write(target, rows)
        print(f"\nwritten: {target} ({len(rows)} row(s) calibrated, {count} in the file)")
    else:
        print(f"\nnot written: --write puts these rows in {target}")
    return OK


def _measured_table(spec: Any, measured: list[loadresults.ModelResults]) -> str:
    lines = [f"{'cluster':<12} {'model':<12} {'pods':>4} {'stage':>5} {'req/s asked':>11} {'tok/s':>10} "
             f"{'replicas':>8} {'per replica':>11} {'TTFT p99':>8} {'ITL p99':>8} {'failed':>6}  at objective"]
    for results in measured:
        for s in results.stages:
            lines.append(f"{results.cluster:<12} {results.model:<12} {results.pods:>4} {s.index:>5} "
                         f"{s.requested_rps:>11,.1f} {s.tokens_per_second:>10,.0f} {s.replicas:>8.3g} "
                         f"{s.per_replica:>11,.0f} {s.ttft_p99:>7.3f}s {s.itl_p99:>7.3f}s {s.failures:>6}  "
                         f"{'yes' if calibration.meets(spec, s) else 'no'}")
    return "\n".join(lines)


def _row_lines(row: calibration.Calibrated) -> str:
    old, new = row.old, row.new
    share = row.input_share
    note = "" if row.saturated else ("\n    (every stage met the objective: the replicas were not pushed to their "
                                     "limit, so this is a floor of what they serve)")
    return (f"  {old.model_class} on {old.gpus_per_replica}x{old.gpu}, at input share {share:.2f}:\n"
            f"    old: prefill {old.prefill_tps:>12,.1f}  decode {old.decode_tps:>10,.1f}  mixed "
            f"{mixed_tps(old, share):>10,.0f}  ({old.source})\n"
            f"    new: prefill {new['prefill_tps']:>12,.1f}  decode {new['decode_tps']:>10,.1f}  mixed "
            f"{row.stage.per_replica:>10,.0f}  ({new['source']})" + note)


def _delta_table(name: str, deltas: list[calibration.ClusterDelta]) -> str:
    lines = [f"broadcast plan '{name}' with these rows (GPUs and nodes per cluster):",
             f"  {'cluster':<16} {'GPUs now':>10} {'GPUs new':>10} {'change':>9} {'nodes now':>10} {'nodes new':>10} "
             f"{'change':>8}"]
    for d in deltas:
        lines.append(f"  {d.cluster:<16} {d.gpus[0]:>10,} {d.gpus[1]:>10,} {d.gpus[1] - d.gpus[0]:>+9,} "
                     f"{d.nodes[0]:>10,} {d.nodes[1]:>10,} {d.nodes[1] - d.nodes[0]:>+8,}")
    g = [sum(d.gpus[i] for d in deltas) for i in (0, 1)]
    n = [sum(d.nodes[i] for d in deltas) for i in (0, 1)]
    lines.append(f"  {'total':<16} {g[0]:>10,} {g[1]:>10,} {g[1] - g[0]:>+9,} {n[0]:>10,} {n[1]:>10,} {n[1] - n[0]:>+8,}")
    return "\n".join(lines)


def _write(target: Path, rows: list[calibration.Calibrated]) -> int:
    """Merge the rows into the calibration file (a row replaces the one with its identity); the
    file is replaced whole, so a reader never sees half of it."""
    kept = {profiles.mapping_key(r): r for r in profiles.calibrated_rows(target)}
    kept.update({row.key: row.new for row in rows})
    body = HEADER + f"# last written {dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%MZ}\n" + yaml.safe_dump(
        {"throughput": [kept[k] for k in sorted(kept)]}, sort_keys=False, width=120)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(body)
    tmp.replace(target)
    return len(kept)

"""One revision's render, capacity plan and simulated night as JSON, for `peaknight diff`.

Run as a script, `python snapshot.py ROOT STACK`: it imports the kit's package (`peaknight`, or `components` before the
rename) of the
checkout at ROOT (not the installed one), so each side of a diff is that revision's code on that
revision's stack file. It reads only long-standing interfaces (config.load_stack, event.build, the
plan's figures, simulator.simulate when the revision has one), so it can run an older checkout.
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any


def _kit(module: str, before_rename: str) -> Any:
    """A module of the checkout's kit: `peaknight.<module>`, or `components.<before_rename>` in a
    revision from before the package was named after the project."""
    try:
        return importlib.import_module(f"peaknight.{module}")
    except ModuleNotFoundError:
        return importlib.import_module(f"components.{before_rename}")


def snapshot(stack: str) -> dict[str, Any]:
    config, event = _kit("spec.config", "config"), _kit("builders.event", "event")

    spec = config.load_stack(stack).spec
    objects = event.build(spec)
    models: dict[str, dict[str, Any]] = {}
    for cluster in objects.plan.clusters:
        for m in cluster.models:
            # Per workload (a disaggregated model's prefill and decode groups each), as `plan` and
            # `simulate` report them; a workload's name is its model's where it is the only one.
            row = models.setdefault(getattr(m, "name", m.model), {"replicas": 0, "floor": 0, "gpus": 0, "nodes": 0, "capacity_tpm": 0.0,
                                              "forecast_tpm": 0.0, "moments": {}})
            for key, fig in (("replicas", m.replicas), ("floor", m.floor_replicas), ("gpus", m.gpus), ("nodes", m.nodes)):
                row[key] += int(fig.value)
            row["capacity_tpm"] += m.capacity_tps.value * 60
            row["forecast_tpm"] += m.demand_tps.value * 60
            for name, fig in m.moment_replicas:
                row["moments"][name] = row["moments"].get(name, 0) + int(fig.value)
    return {
        "objects": {c.cluster.name: {o.key: o.manifest for u in c.units for o in u.objects} for c in objects.clusters},
        "cloud": _cloud(objects),
        "plan": {"models": models, "short": [f"{p.cluster}/{p.name}" for p in objects.plan.short],
                 "gpu_limit": sum(int(p.gpu_limit.value) for c in objects.plan.clusters for p in c.pools)},
        "simulation": _simulation(spec, objects),
    }


def _cloud(objects: Any) -> dict[str, dict[str, Any]]:
    """Per cluster, each provisioner cloud resource (none in a revision from before they existed)."""
    return {c.cluster.name: {r.key: {"type": r.type, "name": r.name, "protect": r.protect, "properties": r.properties}
                             for u in c.units for r in getattr(u, "cloud", ())} for c in objects.clusters}


def _simulation(spec: Any, objects: Any) -> dict[str, dict[str, float]] | None:
    try:
        simulator = _kit("sim.simulator", "simulator")
    except ImportError:
        return None  # a revision from before the simulator
    return {r.model: {"demand_tokens": r.demand_tokens, "unmet_pct": r.unmet_pct, "unmet_tokens": r.unmet_tokens,
                      "gpu_hours": r.gpu_hours, "oracle_gpu_hours": r.oracle_gpu_hours}
            for r in simulator.simulate(spec, objects)}


def main(argv: list[str]) -> int:
    root, stack = Path(argv[1]).resolve(), argv[2]
    # An editable install maps the package to the working tree: drop it so ROOT's code is imported.
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
    sys.path.insert(0, str(root))
    capacity, config = _kit("plan.capacity", "capacity"), _kit("spec.config", "config")

    try:
        out: dict[str, Any] = snapshot(stack)
    except config.ConfigError as err:
        out = {"error": [str(p) for p in err.problems]}
    except capacity.EnvelopeError as err:
        out = {"error": list(err.problems)}
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

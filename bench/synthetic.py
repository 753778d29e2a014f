"""Synthetic events of N clusters, generated from the broadcast stack, for the benchmarks.

Same models, pools, edges, moments and policy as the broadcast night; only the cluster list
changes. Each cluster keeps the broadcast stack's per-cluster load (the forecasts are scaled by
N / 16), so every cluster stays inside the Kubernetes envelope whatever N is and the render grows
with N alone. Shares are 1/N with the rounding remainder on the last cluster, so they add up to 1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
BROADCAST = ROOT / "stacks" / "Pulumi.broadcast.yaml"
KEY = "peaknight:"


def stack_document(clusters: int, base: Path = BROADCAST) -> dict[str, Any]:
    """The stack file (as a YAML document) of a `clusters`-cluster version of `base`."""
    doc = yaml.load(base.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    cfg = doc["config"]
    base_clusters = cfg[KEY + "clusters"]
    regions = list({c["region"]: c for c in base_clusters}.values())  # one template per region
    factor = clusters / len(base_clusters)
    shares = [1 / clusters] * (clusters - 1)
    shares.append(1 - sum(shares))
    cfg[KEY + "clusters"] = [
        {**regions[i % len(regions)], "name": f"syn-{regions[i % len(regions)]['region']}-{i:03d}", "share": share}
        for i, share in enumerate(shares)
    ]
    for model in cfg[KEY + "models"]:
        # float(): YAML 1.1 reads `63.3e9` (no exponent sign) as a string; pydantic accepts either.
        model["peakTokensPerMinute"] = float(model["peakTokensPerMinute"]) * factor
    for edge in cfg.get(KEY + "edges", []):
        edge["peakViewers"] = round(int(edge["peakViewers"]) * factor)
    return doc


def write_stack(clusters: int, directory: Path) -> Path:
    """Write Pulumi.synthetic-<N>.yaml into `directory` (so the CLI names the stack synthetic-<N>)."""
    path = directory / f"Pulumi.synthetic-{clusters}.yaml"
    path.write_text(yaml.dump(stack_document(clusters), Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper),
                              sort_keys=False))
    return path

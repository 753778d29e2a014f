"""The benchmarks' inputs and the render speed-up: synthetic events are valid stacks that fit the
envelope, and the faster YAML dumper writes exactly what PyYAML's C safe dumper writes."""
from __future__ import annotations

import sys

import yaml

import nights
from peaknight.plan import capacity
from peaknight.spec import config
from peaknight.cli import render
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import synthetic  # noqa: E402


def test_synthetic_events_are_valid_stacks_inside_the_envelope(tmp_path):
    broadcast = nights.spec("broadcast")
    for n in (3, 8):
        spec = config.load_stack(str(synthetic.write_stack(n, tmp_path))).spec
        assert len(spec.clusters) == n and sum(c.share for c in spec.clusters) == 1
        assert [m.name for m in spec.models] == [m.name for m in broadcast.models]
        plan = capacity.plan(spec)  # raises EnvelopeError if any cluster is over
        assert not plan.short


class _NoAliases(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """PyYAML's C safe dumper (the pure-Python emitter folds long lines differently), every value
    written where it applies: the render's one deliberate difference."""

    def ignore_aliases(self, data):
        return True


def test_render_dumper_writes_what_pyyaml_writes():
    plain = _NoAliases
    for cluster in nights.representatives("broadcast"):   # one per shape: the others differ only in names
        for unit in cluster.units:
            for obj in unit.objects:
                expected = yaml.dump(obj.manifest, Dumper=plain, sort_keys=True,
                                     default_flow_style=False, width=120)
                written = render.dump(obj.manifest)
                assert written == expected, obj.key
                # Builders share dicts between objects; the render never turns that into anchors.
                assert "&id0" not in written and "*id0" not in written, obj.key

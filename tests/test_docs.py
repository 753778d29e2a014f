"""The README's config reference names every config key, so a new key cannot go undocumented."""
from __future__ import annotations

import dataclasses
import re

from peaknight.provisioners import settings
from peaknight.spec import stack as spec, weights_from
from peaknight.spec.keys import alias
from conftest import ROOT

CONFIG_CLASSES = (spec.Event, spec.Window, spec.Moment, spec.Policy, spec.Slo, spec.Cluster, spec.Addons, spec.GpuPool,
                  spec.Model, spec.Auth, spec.Admission, spec.Ladder, spec.Edge, spec.Rendition, spec.LoadReplay,
                  spec.StackSpec, *settings.PROVISIONER_SETTINGS.values(), *weights_from.WEIGHTS_FROM.values(),
                  settings.ExistingGroup)


def reference_table(readme: str) -> list[str]:
    """The rows of the README's configuration reference table: a key named anywhere else in the
    README (a prose mention, another table) does not document it."""
    section = readme.split("\n## Configuration reference\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `")]


def undocumented(readme: str) -> list[str]:
    """`Class.key` of every config key no code span of the reference table names."""
    spans = [span for row in reference_table(readme) for span in re.findall(r"`([^`\n]+)`", row)]
    missing = []
    for cls in CONFIG_CLASSES:
        for f in dataclasses.fields(cls):
            word = re.compile(rf"(?<![A-Za-z]){alias(f)}(?![A-Za-z])")
            if not any(word.search(span) for span in spans):
                missing.append(f"{cls.__name__}.{alias(f)}")
    return missing


def test_every_config_key_is_in_the_readme():
    assert undocumented((ROOT / "README.md").read_text()) == []


def test_a_key_named_only_outside_the_reference_table_is_undocumented():
    readme = (ROOT / "README.md").read_text()
    row = next(r for r in reference_table(readme) if r.startswith("| `scale`"))
    prose_only = readme.replace(row + "\n", "").replace("## Layout\n", "## Layout\n\nSet `scale` for a rehearsal.\n")
    assert "`scale`" in prose_only
    assert undocumented(prose_only) == ["StackSpec.scale"]

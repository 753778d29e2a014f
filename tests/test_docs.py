"""The README's config reference names every config key, so a new key cannot go undocumented."""
from __future__ import annotations

import dataclasses
import re

from peaknight.provisioners import settings
from peaknight.spec import stack as spec
from peaknight.spec.config import _alias
from conftest import ROOT


def test_every_config_key_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    spans = re.findall(r"`([^`\n]+)`", readme)
    missing = []
    for cls in (spec.Event, spec.Window, spec.Moment, spec.Policy, spec.Slo, spec.Cluster, spec.GpuPool, spec.Model,
                spec.Edge, spec.Rendition, spec.StackSpec, *settings.PROVISIONER_SETTINGS.values(),
                settings.ExistingGroup):
        for f in dataclasses.fields(cls):
            word = re.compile(rf"(?<![A-Za-z]){_alias(f)}(?![A-Za-z])")
            if not any(word.search(span) for span in spans):
                missing.append(f"{cls.__name__}.{_alias(f)}")
    assert missing == []

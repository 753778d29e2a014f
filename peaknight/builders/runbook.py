"""Which runbook entry an alert links to: `event.runbookUrl` + `#` + the anchor GitHub gives the
entry's heading. docs/runbook.md has one heading per alert, named exactly as the alert, so the
link a paged SRE clicks in Alertmanager opens what to check and what to do
(tests/test_runbook.py keeps every rendered link on a heading that exists).
"""
from __future__ import annotations

import re
import unicodedata

from peaknight.builders.objects import Scope


def anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: its text (code spans unwrapped) lower-cased,
    every character but letters, digits, `_`, `-` and spaces dropped, each space a `-`
    (github/cmark-gfm's and github-slugger's rule; repeated headings get -1, -2, which the
    runbook avoids by naming every heading once)."""
    text = heading.strip().replace("`", "").lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return re.sub(" ", "-", kept)


def url(scope: Scope, alert: str) -> str:
    """The alert's entry in the event's runbook."""
    return f"{scope.event.runbook_url}#{anchor(alert)}"

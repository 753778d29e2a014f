"""Figure: every number of the plan carries the arithmetic that produced it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """A number in the plan and the arithmetic that produced it."""

    value: float
    why: str

"""The night's clock: local times in the event's zone, and their UTC equivalents.

Node-pool disruption-budget schedules run in UTC while KEDA cron triggers take a time zone;
converting in one place keeps the node-pool freeze and the pre-scaling on the same night.
"""
from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Protocol

from peaknight.spec.stack import Event


class _HasEvent(Protocol):
    @property
    def event(self) -> Event: ...


def zone(spec: _HasEvent) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(spec.event.time_zone)


def to_utc(spec: _HasEvent, local: dt.datetime) -> dt.datetime:
    return local.replace(tzinfo=zone(spec)).astimezone(dt.timezone.utc)


def cron_at(moment: dt.datetime) -> str:
    """A five-field cron that fires once a year at `moment` (minute hour day month *)."""
    return f"{moment.minute} {moment.hour} {moment.day} {moment.month} *"


def go_duration(delta: dt.timedelta) -> str:
    """Go duration syntax (`5h15m`) as node-pool budget `duration`s expect."""
    minutes = int(delta.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes or not hours else "")


def parse_go_duration(text: str) -> dt.timedelta:
    """The inverse of go_duration (hours and minutes only); ValueError on anything else."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?", text)
    if not match or not text:
        raise ValueError(f"not an hours-and-minutes Go duration: {text!r}")
    return dt.timedelta(hours=int(match.group(1) or 0), minutes=int(match.group(2) or 0))


def window_minutes(spec: _HasEvent) -> int:
    return int((spec.event.window.end - spec.event.window.start).total_seconds() // 60)

"""Timing helpers. Tests use intervals of a few hundred ms and tolerances of
about 2x: they check cadence, never exact timing."""
from __future__ import annotations

import statistics


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")

"""Peaknight: a pure core (config, planner, manifest builders) under a thin Pulumi shell."""

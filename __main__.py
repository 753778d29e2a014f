"""Pulumi entry point: load the stack's spec from its config and declare the event."""
from peaknight.pulumi import program

program.main()

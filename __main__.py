"""Pulumi entry point: load the stack's spec from its config and declare the event."""
from components import program

program.main()

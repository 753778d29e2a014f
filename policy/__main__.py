"""Peaknight's Pulumi policy pack: serves the policies of peaknight_policies to the Pulumi engine."""
from peaknight_policies import POLICIES
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(name="peaknight", enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)

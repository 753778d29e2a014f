"""Provisioners: how each cluster gets its GPU nodes (base.py: the protocol; registry.py: which
module serves each `clusters[].provisioner.kind`)."""

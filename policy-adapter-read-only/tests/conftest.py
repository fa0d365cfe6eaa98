"""Fixtures come from sidecar-policy's pytest plugin (policy.testing), loaded automatically."""

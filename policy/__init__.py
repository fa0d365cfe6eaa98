"""sidecar-policy: a sidecar-local policy and authorization service with Mixer's adapter model."""

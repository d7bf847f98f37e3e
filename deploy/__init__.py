"""Deployment: the local single-node Kafka broker (the embedded default) and, later, manifests
for real clusters."""

"""The Kubernetes operator (kopf)."""

"""VU workers: the load engine."""

"""The token refresher: one shared token for every VU."""

"""Local mode: run a LoadTest on one machine with an embedded Redis."""

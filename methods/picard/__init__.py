"""picard (work in progress)."""

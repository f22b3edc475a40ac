"""patchsvdd (work in progress)."""

"""dmse (work in progress)."""

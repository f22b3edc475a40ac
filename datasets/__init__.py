"""Dataset cards and split definitions (the top-level `datasets/` folder of the repository)."""

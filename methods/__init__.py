"""Built-in methods, one folder each (the top-level `methods/` folder of the repository)."""

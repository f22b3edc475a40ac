"""CutPaste 3-way with a Gaussian density on window embeddings (PICARD's DBT adaptation)."""
from .method import CutPaste, CutPasteConfig

__all__ = ["CutPaste", "CutPasteConfig"]

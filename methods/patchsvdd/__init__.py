"""Patch SVDD with a hierarchical encoder and exact nearest-neighbour scoring (PICARD's DBT adaptation)."""
from .method import PatchSVDD, PatchSVDDConfig

__all__ = ["PatchSVDD", "PatchSVDDConfig"]

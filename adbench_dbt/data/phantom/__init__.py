"""Synthetic DBT phantom written in the BCS-DBT layout."""

"""Amaranth generators for the fxbp training datapath (see docs/datapath.md)."""

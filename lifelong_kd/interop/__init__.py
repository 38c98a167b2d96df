"""Bridges to other continual-learning libraries (optional extras)."""

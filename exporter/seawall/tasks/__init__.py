"""Supervised background tasks: the per-task record and the restart loop."""

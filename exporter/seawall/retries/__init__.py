"""Retries: the retry primitive and the delay schedules it (and the supervisor) use."""

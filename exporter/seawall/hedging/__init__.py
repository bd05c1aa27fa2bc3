"""Hedged calls: a second attempt after a delay, the first success wins."""

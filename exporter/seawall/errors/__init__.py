"""Error classification and the windowed error aggregator."""

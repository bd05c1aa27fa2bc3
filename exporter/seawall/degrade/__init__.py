"""Features with fallbacks and `safe_call`."""

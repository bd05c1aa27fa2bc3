"""Timeouts, bulkheads and rate limiters (local and Redis), and `policy()` that stacks them."""

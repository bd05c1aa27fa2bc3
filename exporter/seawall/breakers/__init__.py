"""The circuit breaker: its settings, its state machine, its sliding windows and the facade users call."""

"""Tools that run the seawall monitoring stack locally: shared by `scripts/stack.py` and the tests.

- `stacktools.harness`: the demo, Prometheus and Alertmanager as local processes, configured from the
  shipped files, one of each or HA replicas (`Stack`, `Receivers`, `Timings`, `SHIPPED`, `FAST`).
- `stacktools.receivers`: local HTTP receivers standing in for Slack and PagerDuty.
- `stacktools.timings`: how long alerts take to fire and resolve (docs/alerts.md's table).

A top-level package (not `tests/`) because a user-facing script must not import test modules; it is
importable from the repository root (pytest's `pythonpath`, and `scripts/stack.py` adds the root).
"""

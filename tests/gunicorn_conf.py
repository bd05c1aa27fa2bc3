"""gunicorn settings for multiprocess metrics, as README "Several workers" tells users to write them."""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess


def child_exit(server: Any, worker: Any) -> None:
    """A worker that ended takes its `live*` gauges with it; its counters stay in the sums."""
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

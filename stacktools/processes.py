"""Stopping a child process within a bound: the one way the stack, the tests and the benchmarks end
what they started (ask first, then kill, always reap), so no caller can wait for ever."""

from __future__ import annotations

import signal
import subprocess


def stop_process(
    process: subprocess.Popen[bytes] | subprocess.Popen[str],
    *,
    ask: signal.Signals = signal.SIGTERM,
    timeout: float = 10.0,
) -> None:
    """Send `ask` to a running `process`, wait up to `timeout` seconds for it to end, then SIGKILL
    and reap it (again within `timeout`). A process that already ended is left as it is."""
    if process.poll() is not None:
        return
    process.send_signal(ask)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)

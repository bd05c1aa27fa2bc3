"""The stream's hello and heartbeat events at the ASGI level, a send that never completes, and the
new settings' validation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import seawall
from seawall.starlette import SnapshotStream
from test_web_stream import SCOPE, Client, run


def events_of(client: Client) -> list[tuple[str, str]]:
    out = []
    for message in client.messages[1:]:
        for block in message.get("body", b"").decode().split("\n\n"):
            if block.startswith("event: "):
                name, data = block.split("\ndata: ", 1)
                out.append((name[len("event: ") :], data))
    return out


def test_hello_then_heartbeats_between_snapshots() -> None:
    stream = SnapshotStream(seawall.Registry(), interval=0.5, heartbeat=0.1, max_seconds=1.2)

    async def scenario() -> Client:
        client = Client()
        await asyncio.wait_for(stream(SCOPE, client.receive, client.send), timeout=5)
        return client

    client = run(scenario())
    names = [name for name, _ in events_of(client)]
    assert names[0] == "hello"
    hello = json.loads(events_of(client)[0][1])
    assert len(hello.pop("stream")) == 32  # the id its reader acknowledges
    assert hello == {"interval": 0.5, "heartbeat": 0.1, "ack_every": 5.0}
    assert names[1] == "snapshot"
    assert names.count("snapshot") in (2, 3)  # at 0, 0.5 and maybe 1.0 s
    assert names.count("heartbeat") >= 6  # every 0.1 s between them
    assert names[-1] == "bye"


class Stuck(Client):
    """A client whose transport never drains after the first few messages (it stopped reading)."""

    async def send(self, message: dict[str, Any]) -> None:
        if len(self.messages) >= 3:
            await asyncio.Event().wait()
        await super().send(message)


def test_a_send_that_never_completes_frees_the_slot_after_send_timeout() -> None:
    stream = SnapshotStream(seawall.Registry(), interval=0.05, send_timeout=0.2, max_seconds=60)

    async def scenario() -> float:
        client = Stuck()
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.wait_for(stream(SCOPE, client.receive, client.send), timeout=5)
        return loop.time() - start

    elapsed = run(scenario())
    assert 0.2 <= elapsed < 2.0
    assert stream.open_streams == 0
    assert stream.dropped_slow_clients == 1


def test_close_interrupts_a_stuck_send() -> None:
    stream = SnapshotStream(seawall.Registry(), interval=0.05, send_timeout=60, max_seconds=60)

    async def scenario() -> None:
        client = Stuck()
        task = asyncio.create_task(stream(SCOPE, client.receive, client.send))
        await asyncio.sleep(0.2)
        assert stream.open_streams == 1
        stream.close()
        await asyncio.wait_for(task, timeout=2)

    run(scenario())
    assert stream.open_streams == 0


@pytest.mark.parametrize("name", ["send_timeout", "heartbeat"])
@pytest.mark.parametrize("value", [0, 0.01, 301, True, "5"])
def test_settings_are_validated(name: str, value: Any) -> None:
    with pytest.raises(
        ValueError, match=f"stream_{name} must be between 0.05 and 300 seconds, got {value!r}"
    ):
        SnapshotStream(seawall.Registry(), **{name: value})

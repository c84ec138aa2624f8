"""services/ingest/protocol.py: Signal behaves as asyncio.Event does for uvicorn's four uses, and
uvicorn serving with LeanHttpToolsProtocol answers as with its own protocol: a body sent in parts,
pipelined requests in order, a client that stops reading (flow control) and one that goes away."""
from __future__ import annotations

import asyncio
import contextlib

import pytest
import uvicorn

from services.ingest.protocol import LeanHttpToolsProtocol, Pipeline, Signal


async def test_a_signal_set_before_the_wait_returns_at_once_and_clear_makes_it_wait_again():
    signal = Signal()
    assert not signal.is_set()
    signal.set()
    assert signal.is_set() and await signal.wait() is True
    signal.clear()
    assert not signal.is_set()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(signal.wait(), 0.01)


async def test_a_signal_wakes_every_waiter_and_a_cancelled_waiter_leaves_none_behind():
    signal = Signal()
    waiters = [asyncio.create_task(signal.wait()) for _ in range(3)]
    cancelled = asyncio.create_task(signal.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await cancelled
    assert len(signal._waiters) == 3
    signal.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert signal._waiters is None
    assert Signal(is_set=True).is_set()


def test_the_pipeline_keeps_uvicorn_s_order():
    pipeline = Pipeline()
    pipeline.append("b")
    pipeline.appendleft("a")
    pipeline.append("c")
    assert pipeline.pop() == "c" and list(pipeline) == ["a", "b"]


BIG = 32_000_000


async def echo(scope, receive, send):
    """Answers with the request's body and, for /big, more than the sockets' buffers hold."""
    assert scope["type"] == "http"
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/big":
        body = b"x" * BIG
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def lean_server():
    config = uvicorn.Config(echo, host="127.0.0.1", port=0, http=LeanHttpToolsProtocol, interface="asgi3",
                            lifespan="off", log_level="warning")
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup()  # serve()'s first step; its main loop only ticks uvicorn's own Date header
    try:
        yield server, server.servers[0].sockets[0].getsockname()[1]
    finally:
        await server.shutdown()


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    lengths = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    return await reader.readexactly(int(lengths[0]))


def request(path: str, body: bytes) -> bytes:
    return f"POST {path} HTTP/1.1\r\nhost: t\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body


async def test_uvicorn_with_the_lean_protocol_uses_its_lighter_objects():
    async with lean_server() as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("/", b"hi"))
        assert await read_response(reader) == b"hi"
        (protocol,) = server.server_state.connections
        assert isinstance(protocol, LeanHttpToolsProtocol)
        assert isinstance(protocol.pipeline, Pipeline)
        assert isinstance(protocol.flow._is_writable_event, Signal)
        writer.close()


async def test_a_body_in_parts_and_pipelined_requests_are_answered_in_order():
    async with lean_server() as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head, body = request("/", b"first part|second part").split(b"\r\n\r\n")
        writer.write(head + b"\r\n\r\nfirst part|")
        await writer.drain()
        await asyncio.sleep(0.05)  # the app is waiting for more body (the cycle's Signal)
        writer.write(b"second part" + request("/", b"two") + request("/", b"three"))
        assert [await read_response(reader) for _ in range(3)] == [b"first part|second part", b"two", b"three"]
        writer.close()


async def test_a_client_that_stops_reading_gets_the_whole_answer_once_it_reads_again():
    async with lean_server() as (server, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**16)
        writer.write(request("/big", b""))
        await asyncio.sleep(0.2)
        (protocol,) = server.server_state.connections
        assert protocol.flow.write_paused  # the app's send waits on the flow Signal
        assert len(await read_response(reader)) == BIG
        writer.write(request("/", b"after"))
        assert await read_response(reader) == b"after"
        writer.close()


async def test_a_client_that_goes_away_mid_body_leaves_the_server_serving():
    async with lean_server() as (server, port):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("/", b"0123456789")[:-5])
        await writer.drain()
        writer.close()
        await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("/", b"still"))
        assert await read_response(reader) == b"still"
        writer.close()

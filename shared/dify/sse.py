"""Server-sent events as Dify writes them: `event: ping` keep-alives and `data: {json}` lines,
each event followed by a blank line. Parsing is split from reading so that a gateway can forward
the raw bytes of each event untouched and still know what it forwarded."""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator

from shared.logs import get_logger

from .models import StreamEvent

log = get_logger("shared.dify.sse")

# An event ends at a blank line; SSE allows \n, \r\n and \r line ends.
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


def parse_sse_lines(lines: Iterable[str]) -> StreamEvent | None:
    """The event of one SSE block (its lines, without the blank separator).

    Returns None for a block with nothing to report (comments only) or whose data is not a JSON
    object — logged, never raised: one odd event must not end a run's stream."""
    name: str | None = None
    data_lines: list[str] = []
    for line in lines:
        line = line.rstrip("\r\n")
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data_lines.append(value)
    if not data_lines:
        return StreamEvent(event=name) if name else None
    text = "\n".join(data_lines)
    try:
        payload = json.loads(text)
    except ValueError:
        log.warning("dify.sse.unparsable", sse_event=name, data=text[:200])
        return None
    if not isinstance(payload, dict):
        log.warning("dify.sse.not_an_object", sse_event=name, data=text[:200])
        return None
    if name and "event" not in payload:
        payload["event"] = name
    if not isinstance(payload.get("event"), str):
        payload["event"] = "message"
    if not isinstance(payload.get("data"), dict):
        payload.pop("data", None)
    try:
        return StreamEvent.model_validate(payload)
    except ValueError:
        log.warning("dify.sse.unexpected_shape", data=text[:200])
        return None


def parse_sse_block(raw: bytes) -> StreamEvent | None:
    event = parse_sse_lines(raw.decode("utf-8", errors="replace").splitlines())
    if event is not None:
        event.raw = raw
    return event


class SseSplitter:
    """Feed it bytes as they arrive; it hands back complete event blocks, byte for byte
    (separator included), so that concatenating the blocks gives back the stream."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        self._buffer += chunk
        while True:
            match = _EVENT_END.search(self._buffer)
            if match is None:
                return
            block, self._buffer = self._buffer[:match.end()], self._buffer[match.end():]
            yield block

    def flush(self) -> bytes | None:
        """What is left when the stream ends without a final blank line."""
        rest, self._buffer = self._buffer, b""
        return rest if rest.strip() else None


def parse_sse_text(text: str) -> list[StreamEvent]:
    """Every event of a whole SSE text (tests, fixtures)."""
    splitter = SseSplitter()
    blocks = list(splitter.feed(text.encode()))
    rest = splitter.flush()
    if rest:
        blocks.append(rest)
    return [event for event in map(parse_sse_block, blocks) if event is not None]

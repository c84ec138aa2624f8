"""One socket write per loop iteration instead of one per AMQP frame.

pika's asyncio transport buffers every frame it is given (a publish is three: method, header, body;
an ack is one) and, once the socket is writable, sends the buffered chunks with one `send()` each.
On loopback a `send()` runs the whole TCP receive path in the sender's time slice, so those sends
were the largest single cost of a publish and of an ack in py-spy profiles of our processes. Joining
the chunks that wait before pika's own send loop keeps everything pika does (partial sends re-queue
the rest, the byte count, the writability watcher, frame order); the frames only leave together.
"""
from __future__ import annotations

from typing import Any

from pika.adapters.utils import io_services_utils

_Transport: Any = io_services_utils._AsyncTransportBase
_pika_produce = _Transport._produce


def _produce_joined(self: Any) -> None:
    buffers = self._tx_buffers
    if len(buffers) > 1:
        joined = b"".join(buffers)
        buffers.clear()
        buffers.append(joined)  # the byte count is unchanged: same bytes, one chunk
    _pika_produce(self)


def install() -> None:
    """Idempotent: the transport class is patched once per process."""
    if _Transport._produce is not _produce_joined:
        _Transport._produce = _produce_joined

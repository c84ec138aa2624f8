"""The broker's own few exceptions; services never see pika's."""
from __future__ import annotations


class BrokerError(Exception):
    pass


class BrokerUnavailable(BrokerError):
    """No connection to RabbitMQ within the time allowed."""


class PublishNotConfirmed(BrokerError):
    """RabbitMQ did not confirm a publish (nack, or the connection went away before the confirm)."""


class RetryLater(Exception):
    """Raised by a handler: the message should come back after `delay_s` (a delay queue, not a timer).

    `counted=False` is for waits that are not the message's fault (the store is down): they do not
    use up its attempts, so it is retried until the cause is gone instead of dead-lettered."""

    def __init__(self, reason: str, delay_s: float = 1.0, *, counted: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_s = delay_s
        self.counted = counted


class Reject(Exception):
    """Raised by a handler: the message can never succeed; it goes to its DLQ with the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

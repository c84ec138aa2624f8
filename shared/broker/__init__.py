"""The one door to RabbitMQ. Only this package imports pika."""
from shared.broker.client import Broker, Delivery
from shared.broker.errors import BrokerError, BrokerUnavailable, PublishNotConfirmed, Reject, RetryLater

__all__ = ["Broker", "Delivery", "BrokerError", "BrokerUnavailable", "PublishNotConfirmed", "Reject", "RetryLater"]

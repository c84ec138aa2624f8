"""The one door to RabbitMQ. Only this package imports pika."""
from shared.broker.client import Broker
from shared.broker.errors import BrokerError, BrokerUnavailable, PublishNotConfirmed, Reject, RetryLater
from shared.broker.outbound import Outbound, publish_all
from shared.broker.types import Delivery

__all__ = ["Broker", "Delivery", "BrokerError", "BrokerUnavailable", "PublishNotConfirmed", "Reject", "RetryLater",
           "Outbound", "publish_all"]

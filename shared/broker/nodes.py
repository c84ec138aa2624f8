"""The RabbitMQ nodes a process may connect to, and which one it tries next.

`HITL_RABBITMQ_URL` names one node or several, each an `amqp://` URL, separated by commas or white
space (`amqp://u:p@rmq-0:5672/%2F,amqp://u:p@rmq-1:5672/%2F`); the libpq-style short form
`amqp://u:p@rmq-0:5672,rmq-1:5672,rmq-2:5672/%2F` (one user, vhost and query for every host) means
the same. A process shuffles the list once (so that replicas spread their connections over the
cluster), connects to the first node that answers, and after a lost connection goes on with the
next one: the node it lost is the last it tries again.
"""
from __future__ import annotations

import random
import re
from collections.abc import Sequence

SCHEMES = ("amqp://", "amqps://")
# RabbitMQ's own default for a quorum queue's replicas (`quorum_cluster_size`); more replicas only
# add write latency without surviving more failures that matter for one deployment.
MAX_DEFAULT_GROUP_SIZE = 3
# A comma or white space that starts a new URL (`scheme://`); a comma inside a password does not.
_URL_BOUNDARY = re.compile(r"[\s,]+(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def parse_node_urls(value: str) -> tuple[str, ...]:
    """Every node URL in `value`, in the order given, without duplicates. Raises ValueError naming the
    entry that is not an amqp:// or amqps:// URL (its password left out)."""
    urls: list[str] = []
    for part in _URL_BOUNDARY.split(value.strip()):
        part = part.strip(" \t\r\n,")
        if not part:
            continue
        if not part.startswith(SCHEMES):
            raise ValueError(f"{safe_url(part)!r}: every RabbitMQ node URL must start with amqp:// or amqps://")
        for url in _expand_hosts(part):
            if url not in urls:
                urls.append(url)
    if not urls:
        raise ValueError("no RabbitMQ URL given")
    return tuple(urls)


def _expand_hosts(url: str) -> list[str]:
    """`amqp://u:p@h1:1,h2:2/vh?x=1` → one URL per host, each with the same user, vhost and query."""
    scheme, _, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if "," not in hosts:
        return [url]
    if any(not h.strip() for h in hosts.split(",")):
        raise ValueError(f"{safe_url(url)!r}: an empty host in the node list")
    return [f"{scheme}://{userinfo}{at}{h.strip()}{slash}{tail}" for h in hosts.split(",")]


def safe_url(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}{sep}{user}{':***' if colon else ''}@{hosts}{slash}{tail}"


def default_group_size(urls: Sequence[str], configured: int | None = None) -> int | None:
    """Replicas of each quorum queue (`x-quorum-initial-group-size`): the configured number, else one
    per node URL up to MAX_DEFAULT_GROUP_SIZE. One URL says nothing about the cluster behind it (a load
    balancer, a single node): None leaves the choice to RabbitMQ."""
    if configured is not None:
        return configured
    if len(urls) <= 1:
        return None
    return min(len(urls), MAX_DEFAULT_GROUP_SIZE)


class NodeRing:
    """The order in which a process tries the nodes: shuffled once, then round and round, so that
    after a lost connection the next node is tried first and the lost one last."""

    def __init__(self, urls: Sequence[str], rng: random.Random | None = None) -> None:
        if not urls:
            raise ValueError("no RabbitMQ URL given")
        self.urls = list(urls)
        (rng or random.Random()).shuffle(self.urls)
        self._next = 0
        self.current: str | None = None

    def __len__(self) -> int:
        return len(self.urls)

    def next(self) -> str:
        """The node to try now (it becomes `current`)."""
        self.current = self.urls[self._next % len(self.urls)]
        self._next = (self._next + 1) % len(self.urls)
        return self.current

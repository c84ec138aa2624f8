"""Several RabbitMQ nodes: the URL list, the order nodes are tried in, the quorum replica count, and
the publisher sending an unconfirmed message again (same message id) after a lost connection."""
from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace

import pytest
from pika.spec import Basic

from shared.broker.errors import BrokerUnavailable, PublishNotConfirmed
from shared.broker.nodes import NodeRing, default_group_size, parse_node_urls, safe_url
from shared.broker.publisher import ConfirmWindow, Publisher
from shared.settings import SettingsError, load_settings
from shared.topology import CONSUMER_TIMEOUT_MS, NOTIFIER_EVENTS, Names, build_topology

A, B, C = ("amqp://u:p@rmq-0:5672/%2F", "amqp://u:p@rmq-1:5672/%2F", "amqp://u:p@rmq-2:5672/%2F")


def test_node_urls_are_split_on_commas_and_white_space_in_the_order_given():
    assert parse_node_urls(A) == (A,)
    assert parse_node_urls(f"{A},{B}, {C}") == (A, B, C)
    assert parse_node_urls(f" {A}\n{B}\t{C},") == (A, B, C)


def test_the_host_list_short_form_gives_one_url_per_host_with_the_same_user_vhost_and_query():
    assert parse_node_urls("amqps://u:p@rmq-0:5671,rmq-1:5671 ,rmq-2/hitl?heartbeat=10") == (
        "amqps://u:p@rmq-0:5671/hitl?heartbeat=10", "amqps://u:p@rmq-1:5671/hitl?heartbeat=10",
        "amqps://u:p@rmq-2/hitl?heartbeat=10")


def test_a_comma_inside_a_password_does_not_split_the_url():
    url = "amqp://u:se,cret@rmq-0:5672/%2F"
    assert parse_node_urls(f"{url},{B}") == (url, B)


def test_a_node_listed_twice_is_tried_once():
    assert parse_node_urls(f"{A},{B},{A}") == (A, B)


def test_an_entry_that_is_not_amqp_is_refused_without_showing_its_password():
    with pytest.raises(ValueError, match="amqp://") as err:
        parse_node_urls(f"{A},http://u:hunter2@rmq-1/")
    assert "hunter2" not in str(err.value)
    with pytest.raises(ValueError, match="no RabbitMQ URL"):
        parse_node_urls(" , ")
    with pytest.raises(ValueError, match="empty host"):
        parse_node_urls("amqp://u:p@rmq-0,,rmq-1/%2F")


def test_safe_url_hides_the_password_only():
    assert safe_url("amqp://guest:guest@127.0.0.1:5672/%2F") == "amqp://guest:***@127.0.0.1:5672/%2F"
    assert safe_url("amqp://guest@h/") == "amqp://guest@h/"
    assert safe_url("amqp://h:5672") == "amqp://h:5672"


def test_the_ring_starts_at_a_shuffled_node_and_after_each_one_tries_the_next_the_lost_one_last():
    ring = NodeRing((A, B, C), rng=random.Random(7))
    first_round = [ring.next() for _ in range(3)]
    assert sorted(first_round) == [A, B, C]
    assert [ring.next() for _ in range(3)] == first_round  # the same order, round and round
    assert ring.current == first_round[-1]


def test_replicas_spread_their_first_connection_over_the_nodes():
    firsts = {NodeRing((A, B, C), rng=random.Random(seed)).next() for seed in range(30)}
    assert firsts == {A, B, C}


def test_the_quorum_group_size_follows_the_node_list_up_to_three_unless_configured():
    assert default_group_size((A,)) is None  # one URL may be a load balancer: RabbitMQ decides
    assert default_group_size((A, B)) == 2
    assert default_group_size((A, B, C)) == 3
    assert default_group_size((A, B, C, "amqp://d", "amqp://e")) == 3
    assert default_group_size((A, B, C), configured=5) == 5
    assert default_group_size((A,), configured=3) == 3


def test_settings_take_a_node_list_and_derive_the_replica_count(monkeypatch):
    monkeypatch.setenv("HITL_RABBITMQ_URL", f"{A}, {B} {C}")
    s = load_settings()
    assert s.rabbitmq_nodes == (A, B, C) and s.rabbitmq_url == f"{A},{B},{C}"
    assert s.quorum_group_size == 3
    monkeypatch.setenv("HITL_RABBITMQ_QUORUM_GROUP_SIZE", "5")
    assert load_settings().quorum_group_size == 5
    monkeypatch.setenv("HITL_RABBITMQ_URL", f"{A},ftp://x")
    with pytest.raises(SettingsError, match="HITL_RABBITMQ_URL"):
        load_settings()


def test_every_quorum_queue_gets_the_replica_count_and_work_queues_a_consumer_timeout():
    names = Names("nodes")
    topology = build_topology(names, group_size=3, with_notifier=True)
    quorum = [q for q in topology.queues if q.arguments.get("x-queue-type") == "quorum"]
    assert quorum == list(topology.queues)
    assert all(q.arguments["x-quorum-initial-group-size"] == 3 for q in quorum)
    timed = {q.name for q in topology.queues if "x-consumer-timeout" in q.arguments}
    assert timed == {names.checkpoints_queue, names.decisions_queue, names.runs_queue, names.notifier_queue,
                     names.notifications_queue}
    assert all(q.arguments["x-consumer-timeout"] == CONSUMER_TIMEOUT_MS for q in topology.queues if q.name in timed)
    assert not any("x-quorum-initial-group-size" in q.arguments for q in build_topology(names).queues)


# ---------------------------------------------------------------------- publishing across connections
class FakeChannel:
    def __init__(self) -> None:
        self.is_open = True
        self.sent: list[tuple[str, str, bytes, object]] = []
        self.published = asyncio.Event()

    def basic_publish(self, exchange, routing_key, body, props) -> None:
        self.sent.append((exchange, routing_key, body, props))
        self.published.set()


def ack(tag: int, multiple: bool = False) -> SimpleNamespace:
    return SimpleNamespace(method=Basic.Ack(delivery_tag=tag, multiple=multiple))


async def test_an_unconfirmed_publish_is_sent_again_with_the_same_message_id_after_a_lost_connection():
    loop = asyncio.get_running_loop()
    window, ready = ConfirmWindow(), asyncio.Event()

    async def wait_ready(timeout_s: float) -> None:
        try:
            await asyncio.wait_for(ready.wait(), timeout_s)
        except TimeoutError:
            raise BrokerUnavailable("not ready") from None

    first, second = FakeChannel(), FakeChannel()
    window.attach(first, loop)
    ready.set()
    publishing = asyncio.create_task(Publisher(window, wait_ready, None).publish("ex", "rk", b"{}", timeout_s=10))
    await asyncio.wait_for(first.published.wait(), 2)
    ready.clear()  # the node dies before it confirms
    window.fail_all("connection lost")
    await asyncio.sleep(0.1)
    assert not publishing.done()  # still the caller's: it waits for the next connection
    window.attach(second, loop)  # another node answers
    ready.set()
    await asyncio.wait_for(second.published.wait(), 2)
    window.on_confirm(ack(1))
    await asyncio.wait_for(publishing, 2)
    (_, _, _, props1), (_, _, _, props2) = first.sent[0], second.sent[0]
    assert props1.message_id and props1.message_id == props2.message_id


async def test_a_publish_nobody_confirms_fails_instead_of_being_taken_as_stored():
    window = ConfirmWindow()
    window.attach(FakeChannel(), asyncio.get_running_loop())

    async def always_ready(_timeout_s: float) -> None:
        return None

    with pytest.raises(PublishNotConfirmed):  # a quorum queue without its majority never confirms
        await Publisher(window, always_ready, None).publish("ex", "rk", b"{}", timeout_s=0.3)


async def test_a_publish_nobody_confirms_asks_for_a_new_publishing_channel_as_a_nack_does():
    renewals: list[int] = []
    window = ConfirmWindow(on_nack=lambda: renewals.append(1))
    window.attach(FakeChannel(), asyncio.get_running_loop())

    async def always_ready(_timeout_s: float) -> None:
        return None

    with pytest.raises(PublishNotConfirmed):
        await Publisher(window, always_ready, None).publish("ex", "rk", b"{}", timeout_s=0.1)
    assert renewals == [1]  # RabbitMQ 3.10 may never confirm on that channel again


def test_a_multiple_ack_confirms_every_tag_up_to_it_and_a_nack_fails_its_publish():
    loop = asyncio.new_event_loop()
    try:
        window = ConfirmWindow()
        window.attach(FakeChannel(), loop)
        futures = [window.send("ex", "rk", b"x", None) for _ in range(4)]  # type: ignore[arg-type]
        window.on_confirm(ack(3, multiple=True))
        window.on_confirm(SimpleNamespace(method=Basic.Nack(delivery_tag=4)))
        assert [f.done() and f.exception() is None for f in futures[:3]] == [True] * 3
        assert isinstance(futures[3].exception(), PublishNotConfirmed)
        assert window.unconfirmed == 0
    finally:
        loop.close()


def test_a_nack_asks_for_a_new_publishing_channel_and_an_old_channels_late_ack_is_ignored():
    loop = asyncio.new_event_loop()
    try:
        nacks: list[int] = []
        window = ConfirmWindow(on_nack=lambda: nacks.append(1))
        old, new = FakeChannel(), FakeChannel()
        window.attach(old, loop)
        old_listener = window.listener(old)
        window.send("ex", "rk", b"x", None)  # type: ignore[arg-type]
        old_listener(SimpleNamespace(method=Basic.Nack(delivery_tag=1)))
        assert nacks == [1]  # RabbitMQ 3.10 may nack a channel forever after a leader's node died
        window.fail_all("publishing channel renewed after a nack")
        window.attach(new, loop)
        fut = window.send("ex", "rk", b"x", None)  # type: ignore[arg-type]
        old_listener(ack(1))  # tag 1 of the old numbering: not this publish
        assert not fut.done()
        window.listener(new)(ack(1))
        assert fut.done() and fut.exception() is None
    finally:
        loop.close()


def test_only_the_notifier_declares_its_queues_and_binds_events_to_them():
    """A deployment without a notifier must not route every checkpoint event into a queue nobody reads."""
    names = Names("core")
    core, full = build_topology(names), build_topology(names, with_notifier=True)
    core_queues = {q.name for q in core.queues}
    assert not any(q.startswith((names.notifier_queue, names.notifications_queue)) for q in core_queues)
    assert not [b for b in core.bindings if b.queue.startswith((names.notifier_queue, names.notifications_queue))]
    assert {b.routing_key for b in full.bindings if b.queue == names.notifier_queue} == set(NOTIFIER_EVENTS)
    assert core_queues < {q.name for q in full.queues}  # the notifier declares the core too

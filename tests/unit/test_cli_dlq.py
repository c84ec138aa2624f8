"""`hitl dlq list|replay` on the in-memory broker with the real decider: a poisoned decision is listed
without being taken, replayed once its cause is fixed and applied; nothing is lost when a copy is not
confirmed or the replay dies mid-way; signatures are kept, and renewed only on purpose."""
from __future__ import annotations

import json
import uuid

import pytest

from services.cli import letters
from services.cli.letters import dead_letter_queues, list_letters, replay
from services.decider.service import DeciderService
from shared.broker.memory import _MemoryLease
from shared.broker.signing import BOT_HEADER, INTERNAL_HEADER, bot_headers, signature
from shared.broker.types import ROUTING_KEY_HEADER
from shared.models import CheckpointRequested, DecisionSubmitted
from shared.settings import BotConfig
from shared.store import Database
from shared.store import checkpoints as store
from shared.topology import CHECKPOINT_REQUESTED, dlq_name
from tests.conftest import TEST_KEY, make_settings, memory_broker, verifier

OPS_BOT, OPS_SECRET = "opsbot", "ops-bot-signing-secret-0123"
OLD_KEY = b"the-internal-key-before-the-rotation-0123"


@pytest.fixture
async def decider(sqlite_url):
    settings = make_settings(sqlite_url)
    db = Database(sqlite_url)
    db.migrate()
    broker = memory_broker(settings)
    service = DeciderService(settings, db, broker, verifier(settings))
    await broker.start()
    yield service
    await broker.close()
    db.dispose()


def dlq_of(service, queue="decisions") -> str:
    return dlq_name(getattr(service.settings.names, f"{queue}_queue"))


async def open_checkpoint(service) -> dict:
    req = CheckpointRequested(app="demo", workflow_run_id=str(uuid.uuid4()), node_id="draft", node_output="text",
                              timeout_s=300, max_rounds=3, round=1)
    await service.broker.publish(service.settings.names.commands, CHECKPOINT_REQUESTED, req.to_bytes(),
                                 message_id=req.id)
    await service.broker.drain()
    with service.db.read() as conn:
        return dict(store.by_key(conn, "demo", req.workflow_run_id, "draft", 1))


async def ops_bot_decision(service, cp: dict, action="approve") -> str:
    """A decision from a bot the decider does not know yet: dead-lettered as `unknown bot`."""
    body = {"checkpoint_id": cp["id"], "action": action, "actor": "alice", "id": str(uuid.uuid4())}
    raw = json.dumps(body).encode()
    await service.broker.publish(service.settings.names.decisions, "", raw, message_id=body["id"], sign=False,
                                 headers=bot_headers(OPS_BOT, OPS_SECRET, raw))
    await service.broker.drain()
    return body["id"]


def configure_ops_bot(service) -> None:
    """The fix: the bot becomes a configured principal (what a restart with HITL_BOTS would do)."""
    service.settings.bots.append(BotConfig(name=OPS_BOT, secret=OPS_SECRET, acts_for=["*"], apps=["demo"]))
    service.router.verifier.bot_secrets[OPS_BOT] = OPS_SECRET.encode()


def state(service, cp) -> dict:
    with service.db.read() as conn:
        return dict(store.get(conn, cp["id"]))


async def test_a_poisoned_decision_is_listed_without_being_taken(decider):
    cp = await open_checkpoint(decider)
    message_id = await ops_bot_decision(decider, cp)
    names = decider.settings.names
    for _ in range(3):  # looking does not take
        listed = await list_letters(decider.broker, names, verifier=verifier(decider.settings))
        found = {q.work_queue: q for q in listed}
        decisions = found[names.decisions_queue]
        assert decisions.count == 1 and len(decider.broker.messages(dlq_of(decider))) == 1
    letter = decisions.letters[0]
    assert letter.message_id == message_id and letter.message_type == "-"  # a bot's JSON carries no type
    assert letter.reason.startswith("unknown bot 'opsbot'") and letter.routing_key == ""
    assert letter.sender == "bad-bot-signature:opsbot" and letter.dead_at is not None
    assert cp["id"] in letter.preview
    assert found[names.checkpoints_queue].count == 0 and found[names.runs_queue].count == 0


async def test_replay_after_the_fix_applies_the_decision_and_empties_the_dlq(decider):
    cp = await open_checkpoint(decider)
    message_id = await ops_bot_decision(decider, cp)
    configure_ops_bot(decider)
    report = await replay(decider.broker, decider.settings.names, queue="decisions", ids=[message_id],
                          verifier=verifier(decider.settings))
    assert [r.message_id for r in report.replayed] == [message_id] and report.left == {dlq_of(decider): 0}
    await decider.broker.drain()
    row = state(decider, cp)
    assert row["status"] == "resolved" and row["decided_by"] == "alice" and row["decision_channel"] == "bot:opsbot"
    assert decider.broker.messages(dlq_of(decider)) == []
    copy = ("", decider.settings.names.decisions_queue)  # the default exchange, to the work queue
    (headers,) = [h for e, k, _, h in decider.broker.published if (e, k) == copy]
    assert headers[BOT_HEADER] == OPS_BOT and INTERNAL_HEADER not in headers  # the bot's own signature, kept
    assert headers[ROUTING_KEY_HEADER] == "" and headers[letters.REPLAYS_HEADER] == 1
    assert not {"x-hitl-reason", "x-hitl-attempt", "x-hitl-queue", "x-hitl-dead-at"} & set(headers)


async def test_replay_of_chosen_ids_leaves_the_others_in_order(decider):
    cps = [await open_checkpoint(decider) for _ in range(3)]
    ids = [await ops_bot_decision(decider, cp) for cp in cps]
    configure_ops_bot(decider)
    report = await replay(decider.broker, decider.settings.names, ids=[ids[1], "no-such-id"])
    assert [r.message_id for r in report.replayed] == [ids[1]] and report.missing == ["no-such-id"]
    await decider.broker.drain()
    assert [d.message_id for d in decider.broker.messages(dlq_of(decider))] == [ids[0], ids[2]]
    assert [state(decider, cp)["status"] for cp in cps] == ["open", "resolved", "open"]


async def test_a_dry_run_changes_nothing(decider):
    cp = await open_checkpoint(decider)
    message_id = await ops_bot_decision(decider, cp)
    published = len(decider.broker.published)
    report = await replay(decider.broker, decider.settings.names, everything=True, dry_run=True)
    assert [r.message_id for r in report.replayed] == [message_id]
    assert len(decider.broker.published) == published and report.left[dlq_of(decider)] == 1
    assert [d.message_id for d in decider.broker.messages(dlq_of(decider))] == [message_id]


async def test_a_copy_not_confirmed_leaves_the_letter_in_the_dlq(decider):
    cp = await open_checkpoint(decider)
    message_id = await ops_bot_decision(decider, cp)
    configure_ops_bot(decider)
    decider.broker.fail_next_publishes(1)
    report = await replay(decider.broker, decider.settings.names, everything=True)
    assert report.replayed == [] and [f.message_id for f, _ in report.failed] == [message_id]
    assert [d.message_id for d in decider.broker.messages(dlq_of(decider))] == [message_id]
    assert state(decider, cp)["status"] == "open"


async def test_a_replay_dying_between_the_confirm_and_the_ack_duplicates_and_never_loses(decider, monkeypatch):
    cp = await open_checkpoint(decider)
    message_id = await ops_bot_decision(decider, cp)
    configure_ops_bot(decider)

    async def crash(self, delivery):
        raise RuntimeError("killed after the confirm, before the ack")

    monkeypatch.setattr(_MemoryLease, "ack", crash)
    with pytest.raises(RuntimeError):
        await replay(decider.broker, decider.settings.names, everything=True)
    await decider.broker.drain()
    assert [d.message_id for d in decider.broker.messages(dlq_of(decider))] == [message_id]  # still there
    assert state(decider, cp)["status"] == "resolved"  # and its copy was applied
    monkeypatch.undo()
    await replay(decider.broker, decider.settings.names, everything=True)  # the duplicate: one effect
    await decider.broker.drain()
    with decider.db.read() as conn:
        outcomes = [h["outcome"] for h in store.history_of(conn, cp["id"]) if h["kind"] == "decision"]
    assert outcomes.count("applied") == 1 and decider.broker.messages(dlq_of(decider)) == []


async def test_a_letter_dead_lettered_by_rabbitmq_goes_back_with_its_original_routing_key(decider):
    names = decider.settings.names
    req = CheckpointRequested(app="demo", workflow_run_id=str(uuid.uuid4()), node_id="draft", node_output="text",
                              timeout_s=300, max_rounds=3, round=1)
    death = [{"count": 21, "reason": "delivery_limit", "queue": names.checkpoints_queue, "exchange": names.commands,
              "routing-keys": [CHECKPOINT_REQUESTED], "time": 1_700_000_000}]
    await decider.broker.publish("", dlq_of(decider, "checkpoints"), req.to_bytes(), message_id=req.id,
                                 headers={"x-death": death, "x-delivery-count": 21})
    (found,) = await list_letters(decider.broker, names, queue="checkpoints")
    letter = found.letters[0]
    assert letter.reason == "RabbitMQ dead-lettered it: delivery_limit"
    assert letter.routing_key == CHECKPOINT_REQUESTED and letter.dead_at == 1_700_000_000
    assert letter.message_type == "checkpoint.requested"
    await replay(decider.broker, names, queue=names.checkpoints_queue, everything=True)
    await decider.broker.drain()
    with decider.db.read() as conn:
        assert store.by_key(conn, "demo", req.workflow_run_id, "draft", 1)["status"] == "open"
    headers = next(h for e, k, _, h in decider.broker.published if k == names.checkpoints_queue)
    assert "x-death" not in headers and "x-delivery-count" not in headers


async def test_attempts_start_again_after_a_replay(decider):
    names = decider.settings.names
    req = CheckpointRequested(app="demo", workflow_run_id=str(uuid.uuid4()), node_id="draft", node_output="text",
                              timeout_s=300, max_rounds=3, round=1)
    await decider.broker.publish("", dlq_of(decider, "checkpoints"), req.to_bytes(), message_id=req.id, headers={
        "x-hitl-attempt": 5, "x-hitl-last-error": "store busy", ROUTING_KEY_HEADER: CHECKPOINT_REQUESTED,
        "x-hitl-reason": "gave up after 5 attempts: store busy", "x-hitl-queue": names.checkpoints_queue})
    await replay(decider.broker, names, everything=True, verifier=verifier(decider.settings))
    headers = next(h for e, k, _, h in decider.broker.published if k == names.checkpoints_queue)
    assert "x-hitl-attempt" not in headers and "x-hitl-last-error" not in headers
    assert headers[INTERNAL_HEADER] == signature(TEST_KEY, req.to_bytes())  # its own signature, kept
    await decider.broker.drain()
    with decider.db.read() as conn:
        assert store.by_key(conn, "demo", req.workflow_run_id, "draft", 1) is not None


async def test_a_stale_internal_signature_is_renewed_only_with_resign(decider):
    cp = await open_checkpoint(decider)
    names = decider.settings.names
    dec = DecisionSubmitted(checkpoint_id=cp["id"], action="approve", actor="alice", channel="api")
    # signed like a process did before the internal key was rotated
    await decider.broker.publish(names.decisions, "", dec.to_bytes(), message_id=dec.id, sign=False,
                                 headers={INTERNAL_HEADER: signature(OLD_KEY, dec.to_bytes())})
    await decider.broker.drain()
    (letter,) = decider.broker.messages(dlq_of(decider))
    assert letter.headers["x-hitl-reason"].startswith("bad internal signature")

    kept = await replay(decider.broker, names, everything=True, verifier=verifier(decider.settings))
    assert kept.replayed == [] and "--resign" in kept.skipped[0][1]
    assert len(decider.broker.messages(dlq_of(decider))) == 1

    renewed = await replay(decider.broker, names, everything=True, resign=True, verifier=verifier(decider.settings))
    assert [r.message_id for r in renewed.replayed] == [dec.id]
    await decider.broker.drain()
    assert state(decider, cp)["status"] == "resolved" and decider.broker.messages(dlq_of(decider)) == []


async def test_unsigned_letters_are_never_replayed_or_signed(decider):
    cp = await open_checkpoint(decider)
    raw = json.dumps({"checkpoint_id": cp["id"], "action": "approve", "actor": "alice"}).encode()
    await decider.broker.publish(decider.settings.names.decisions, "", raw, message_id="forged-1", sign=False)
    await decider.broker.drain()
    report = await replay(decider.broker, decider.settings.names, everything=True, resign=True,
                          verifier=verifier(decider.settings))
    assert report.replayed == [] and report.skipped[0][0].sender == "unsigned"
    assert "unsigned" in report.skipped[0][1]
    assert state(decider, cp)["status"] == "open" and len(decider.broker.messages(dlq_of(decider))) == 1


async def test_the_preview_masks_secrets(decider):
    names = decider.settings.names
    body = json.dumps({"type": "checkpoint.requested", "kind": "dify-form", "form_token": "tok-SECRET",
                       "form": {"secret": "s3cr3t", "title": "Approve"}}).encode()
    await decider.broker.publish("", dlq_of(decider, "checkpoints"), body, message_id="m-1")
    (found,) = await list_letters(decider.broker, names, queue="checkpoints")
    preview = found.letters[0].preview
    assert "tok-SECRET" not in preview and "s3cr3t" not in preview
    assert '"form_token":"***"' in preview and '"title":"Approve"' in preview


def test_every_work_queue_has_its_dlq_and_a_queue_is_named_three_ways():
    settings = make_settings("sqlite://", namespace="hitl")
    names = settings.names
    assert dead_letter_queues(names) == [("hitl.checkpoints", "hitl.checkpoints.dlq"),
                                         ("hitl.decisions", "hitl.decisions.dlq"),
                                         ("hitl.notifications", "hitl.notifications.dlq"),
                                         ("hitl.notifier", "hitl.notifier.dlq"), ("hitl.runs", "hitl.runs.dlq")]
    for name in ("decisions", "hitl.decisions", "hitl.decisions.dlq"):
        assert dead_letter_queues(names, name) == [("hitl.decisions", "hitl.decisions.dlq")]
    with pytest.raises(ValueError, match="hitl.runs.dlq"):
        dead_letter_queues(names, "nope")


async def test_replay_needs_ids_or_everything(decider):
    with pytest.raises(ValueError):
        await replay(decider.broker, decider.settings.names)


def test_the_replay_command_needs_ids_or_all_and_resign_needs_the_key(tmp_path, monkeypatch):
    from tests.unit.cli_support import run_cli

    monkeypatch.delenv("HITL_INTERNAL_KEY", raising=False)
    monkeypatch.setenv("HITL_DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    neither = run_cli(None, ["dlq", "replay"])
    assert neither.code == 2 and "--id MESSAGE_ID" in neither.err and "--all" in neither.err
    both = run_cli(None, ["dlq", "replay", "--all", "--id", "m-1"])
    assert both.code == 2 and "do not go together" in both.err
    resign = run_cli(None, ["dlq", "replay", "--all", "--resign"])
    assert resign.code == 2 and "HITL_INTERNAL_KEY" in resign.err
    assert not (tmp_path / "none.db").exists()  # looking for the key never creates a store


def test_the_operator_key_comes_from_the_environment_or_the_store(sqlite_url):
    from services.cli.dlq import operator_key
    from shared.runner import signing_key

    settings = make_settings(sqlite_url, internal_key="k" * 40)
    assert operator_key(settings) == (b"k" * 40, "HITL_INTERNAL_KEY")
    stored = make_settings(sqlite_url)
    assert operator_key(stored)[0] is None  # no store file yet
    db = Database(sqlite_url)
    db.migrate()
    key = signing_key(stored, db)  # what the first process creates
    db.dispose()
    assert operator_key(stored) == (key, "the store")


def test_the_reports_say_what_moved_and_what_stays():
    from services.cli.dlq import letters_text, report_text
    from services.cli.letters import DeadLetters, ReplayReport, describe
    from shared.broker.types import Delivery

    d = Delivery("hitl.decisions.dlq", b'{"type": "decision.submitted"}', "hitl.decisions", "hitl.dlx",
                 {"x-hitl-reason": "unknown bot 'x'", "x-hitl-routing-key": ""}, "m-1", None, None, False)
    letter = describe(d, "hitl.decisions", "hitl.decisions.dlq", None)
    listed = letters_text([DeadLetters("hitl.decisions", "hitl.decisions.dlq", 3, [letter])], "not checked")
    assert "hitl.decisions.dlq  3 letters" in listed and "routing key (none)" in listed
    assert "… 2 more (--limit)" in listed and "sender unchecked" in listed
    report = ReplayReport(replayed=[letter], missing=["m-9"], left={"hitl.decisions.dlq": 2})
    text = report_text(report, dry_run=False)
    assert "replayed m-1  decision.submitted → hitl.decisions" in text and "no letter with message id m-9" in text
    assert text.endswith("1 replayed, 0 skipped, 0 not confirmed; left: 2 in hitl.decisions.dlq")
    assert report_text(report, dry_run=True).splitlines()[-1].startswith("dry run: 1 would be replayed")


async def test_where_no_notifier_ever_ran_its_dlqs_are_left_out_not_an_error(sqlite_url):
    from shared.broker.memory import MemoryBroker
    from shared.topology import build_topology

    settings = make_settings(sqlite_url)
    names = settings.names
    broker = MemoryBroker(name="core", topology=build_topology(names), signing_key=TEST_KEY)  # no notifier
    await broker.start()
    try:
        listed = {q.work_queue for q in await list_letters(broker, names)}
        assert listed == {names.checkpoints_queue, names.decisions_queue, names.runs_queue}
        report = await replay(broker, names, everything=True)
        assert report.replayed == [] and set(report.left) <= {dlq_name(q) for q in listed}
        assert {w for w, _ in dead_letter_queues(names)} >= {names.notifier_queue, names.notifications_queue}
    finally:
        await broker.close()

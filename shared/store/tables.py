"""Table definitions (SQLAlchemy Core). Migrations in shared/migrations mirror these exactly."""
from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()

# A checkpoint is one round of one node of one run of one app: the unique key (and ON CONFLICT target).
CHECKPOINT_KEY = ["app", "workflow_run_id", "node_id", "round"]

# JSON(none_as_null=False): a node output of JSON null is a value, not a missing one.
checkpoints = Table(
    "checkpoints", metadata,
    Column("id", String(36), primary_key=True),
    Column("app", String(64), nullable=False),
    Column("kind", String(16), nullable=False, default="http"),
    Column("workflow_run_id", String(64), nullable=False),
    Column("node_id", String(128), nullable=False),
    Column("round", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("mode", String(16), nullable=False, default="hold"),
    Column("message", Text),
    Column("node_output", JSON(none_as_null=False)),
    Column("app_id", String(64)),
    Column("workflow_id", String(64)),
    Column("user", String(255)),
    Column("timeout_s", Float, nullable=False),
    Column("deadline", Float, nullable=False),
    Column("on_timeout", String(16), nullable=False),
    Column("default_output", JSON(none_as_null=False)),
    Column("assignees", JSON, nullable=False, default=list),
    Column("max_rounds", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("resolved_at", Float),
    Column("action", String(16)),
    Column("output", JSON(none_as_null=False)),
    Column("feedback", Text),
    Column("decided_by", String(128)),
    Column("reason", String(32)),
    Column("decision_channel", String(32)),
    # The Dify call currently held for this checkpoint (which ingest queue, which call).
    Column("reply_to", String(255)),
    Column("correlation_id", String(64)),
    Column("attach_count", Integer, nullable=False, default=0),
    # False between the commit of a resolution and the confirm of its publication (a tiny outbox).
    Column("published", Boolean, nullable=False, default=True),
    # Dify form checkpoints (native Human Input): the captured form, its token (a secret: never in an
    # API answer, an event or a log line), and how the submission went.
    Column("form", JSON),
    Column("secret", String(255)),
    # pending | delivered | resumed | resume_stuck | resume_unconfirmed | resumed_as_stopped | failed
    Column("delivery", String(24)),
    Column("delivery_detail", Text),
    Column("delivered_at", Float),
    # Decision policies (shared/policy.py): the effective policy snapshotted at open, the votes so far,
    # a soft claim others see, and the hash of the newest history row (the chain's head).
    Column("policy", JSON),
    Column("tally", JSON),
    Column("claimed_by", String(128)),
    Column("claimed_at", Float),
    Column("head_hash", String(64)),
    # The app is part of the key: app B naming app A's run opens its own checkpoint (STYLE 14).
    UniqueConstraint(*CHECKPOINT_KEY, name="uq_checkpoint_key"),
    Index("ix_checkpoints_status_deadline", "status", "deadline"),
    Index("ix_checkpoints_run_node", "app", "workflow_run_id", "node_id"),
    Index("ix_checkpoints_unpublished", "published", "resolved_at"),
    Index("ix_checkpoints_delivery", "delivery", "delivered_at"),
    Index("ix_checkpoints_status_resolved", "status", "resolved_at"),  # the console's decided lists
    Index("ix_checkpoints_app_status", "app", "status", "deadline"),  # the console's per-app inbox
)

# Append-only: every state change and every decision attempt (applied or rejected).
history = Table(
    "checkpoint_history", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("checkpoint_id", String(36), nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("actor", String(128)),
    Column("channel", String(32)),
    Column("action", String(16)),
    Column("outcome", String(16)),
    Column("code", String(64)),
    Column("message_id", String(64)),
    Column("idempotency_key", String(200)),
    Column("detail", JSON),
    # Tamper evidence (shared/store/audit.py): SHA-256 over the canonical row and the previous row's hash.
    Column("prev_hash", String(64)),
    Column("hash", String(64)),
    Index("ix_history_checkpoint", "checkpoint_id", "id"),
    Index("ix_history_message", "message_id"),
    Index("ix_history_idem", "checkpoint_id", "idempotency_key"),
)

# ---------------------------------------------------------------------- run monitoring (poller writes)
runs = Table(
    "runs", metadata,
    # (app, Dify's workflow_run_id): a run id reported by two apps is two runs, one per app.
    Column("app", String(64), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("status", String(32), nullable=False),  # ours: a stop seen on the stream wins over Dify's record
    Column("dify_status", String(32)),  # what GET /v1/workflows/run last said
    Column("stale_record", Boolean, nullable=False, default=False),  # Dify's record disagrees (stop quirk)
    Column("source", String(16), nullable=False),  # checkpoint | track | logs | gateway | api | event | poller
    Column("task_id", String(64)),
    Column("user", String(255)),
    Column("workflow_id", String(64)),
    Column("inputs", JSON),
    Column("outputs", JSON),
    Column("error", Text),
    Column("elapsed_time", Float),
    Column("total_steps", Integer),
    Column("exceptions_count", Integer),
    Column("created_at", Float),
    Column("finished_at", Float),
    Column("parent_run_id", String(64)),  # a re-run of this run
    Column("overrides", JSON),  # the inputs a re-run changed
    Column("continuation_of", String(36)),  # the detached checkpoint this run continues
    Column("streamed", Boolean, nullable=False, default=False),
    Column("last_event_at", Float),
    Column("next_poll_at", Float),  # NULL: not scheduled (terminal, or stop confirmed)
    Column("poll_interval", Float),
    Column("poll_failures", Integer, nullable=False, default=0),
    Column("lease_owner", String(64)),
    Column("lease_until", Float),
    Column("tracked_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("started_by", String(255)),  # end_user | account:<email> (from the logs row): who started it in Dify
    # A paused run's Human Input form captured by a re-attach with the run's user (runs started elsewhere).
    Column("capture", String(16)),  # NULL | captured | unavailable | failed
    Column("capture_detail", Text),
    Column("capture_due_at", Float),  # when to (try to) capture; NULL: nothing to capture
    Column("stream_alive_at", Float),  # last sign of a live stream reader: an event or a heartbeat
    Column("reattach_count", Integer, nullable=False, default=0),  # re-attaches after a lost stream
    Column("reattached_at", Float),
    Column("unlisted", Boolean, nullable=False, default=False),  # the logs listing does not show it
    Column("direct_until", Float),  # polled one by one until then, listed or not
    Index("ix_runs_next_poll", "next_poll_at"),
    Index("ix_runs_app_status", "app", "status"),
    Index("ix_runs_continuation", "continuation_of"),
    Index("ix_runs_capture_due", "capture_due_at"),
)

node_executions = Table(
    "node_executions", metadata,
    Column("app", String(64), primary_key=True),
    Column("id", String(64), primary_key=True),  # Dify's node execution id
    Column("run_id", String(64), nullable=False),
    Column("node_id", String(128), nullable=False),
    Column("node_type", String(32)),
    Column("title", String(255)),
    Column("status", String(32), nullable=False),
    Column("loop_id", String(128)),
    Column("loop_index", Integer),
    Column("iteration_id", String(128)),
    Column("iteration_index", Integer),
    Column("retries", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("inputs", JSON),
    Column("outputs", JSON),
    Column("elapsed_time", Float),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("seq", Integer, nullable=False, default=0),  # order of first sight within the run
    Index("ix_nodes_run", "app", "run_id", "seq"),
)

run_history = Table(
    "run_history", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("app", String(64), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),  # tracked | status | node | stream | stop | rerun | event
    Column("status", String(32)),
    Column("node_id", String(128)),
    Column("detail", JSON),
    Index("ix_run_history_run", "app", "run_id", "id"),
)

discovery_watermarks = Table(
    "discovery_watermarks", metadata,
    Column("app", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),  # newest log row seen (unix seconds)
    Column("updated_at", Float, nullable=False),
    Column("sweep_owner", String(64)),  # the poller walking this app's logs listing now
    Column("sweep_until", Float),
)

# A decision that arrived before its checkpoint: kept, and applied when the checkpoint opens (or
# settled as expired when it never does). A `202 accepted` is a promise.
parked_decisions = Table(
    "parked_decisions", metadata,
    Column("id", String(64), primary_key=True),  # the decision's message id
    Column("workflow_run_id", String(64), nullable=False),
    Column("node_id", String(128), nullable=False),
    Column("apps", JSON, nullable=False),  # the apps the actor may decide for
    Column("actor", String(128), nullable=False),
    Column("decision", JSON, nullable=False),  # DecisionSubmitted as JSON
    Column("parked_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("status", String(16), nullable=False),  # parked | applied | refused | expired
    Column("checkpoint_id", String(36)),
    Column("code", String(64)),
    Column("settled_at", Float),
    Index("ix_parked_target", "workflow_run_id", "node_id", "status"),
    Index("ix_parked_expiry", "status", "expires_at"),
)

# Keys every process shares through the store (the internal message-signing key).
hitl_keys = Table(
    "hitl_keys", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
)


# One vote per reviewer and checkpoint (a quorum); the checkpoint resolves when the policy says so.
votes = Table(
    "votes", metadata,
    Column("checkpoint_id", String(36), primary_key=True),
    Column("voter", String(128), primary_key=True),
    Column("action", String(16), nullable=False),
    Column("channel", String(32)),
    Column("at", Float, nullable=False),
    Column("message_id", String(64)),
    Column("feedback", Text),
)

# Reminders, deadline warnings and escalation steps: rows swept by every decider against the store's
# clock; firing is a conditional update, so a step fires once whatever the number of replicas.
timers = Table(
    "checkpoint_timers", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("checkpoint_id", String(36), nullable=False),
    Column("kind", String(16), nullable=False),  # reminder | deadline_near | escalate
    Column("step", Integer, nullable=False),
    Column("due_at", Float, nullable=False),
    Column("fired_at", Float),
    Column("outcome", String(16)),  # fired | skipped (the checkpoint had closed)
    UniqueConstraint("checkpoint_id", "kind", "step", name="uq_timer"),
    Index("ix_timers_due", "fired_at", "due_at"),
)

# A chain across the store: each anchor records the chain heads of the checkpoints that changed since
# the previous one (or, kind "prune", the heads of what retention deleted) and hashes the previous.
audit_anchors = Table(
    "audit_anchors", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("kind", String(16), nullable=False),  # anchor | prune
    Column("heads", JSON, nullable=False),
    Column("prev_hash", String(64)),
    Column("hash", String(64), nullable=False),
)

# ---------------------------------------------------------------------- console sign-ins (console writes)
# One row per sign-in: the browser's cookie holds a random token, the row its SHA-256. Sign-out, an
# expiry, or the reviewer's removal or credential change revokes the row, and every console replica
# sharing the store refuses the cookie from then on.
console_sessions = Table(
    "console_sessions", metadata,
    Column("id", String(64), primary_key=True),  # sha256 hex of the cookie's token
    Column("reviewer", String(128), nullable=False),
    Column("method", String(16), nullable=False),  # password | oidc
    Column("groups", JSON, nullable=False, default=list),  # mapped from the identity provider's claims
    Column("fingerprint", String(64), nullable=False),  # the reviewer's credentials when they signed in
    Column("csrf", String(64), nullable=False),
    Column("address", String(64)),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("revoked_reason", String(32)),  # sign_out | credentials_changed | removed | expired
    Column("id_token", Text),  # OIDC: the hint an RP-initiated logout sends back to the provider
    Index("ix_console_sessions_reviewer", "reviewer", "revoked_at"),
    Index("ix_console_sessions_expiry", "expires_at"),
)

# ---------------------------------------------------------------------- the notifier (its own tables)
# One row per platform message to send once: a card for (checkpoint, recipient, event), or the update
# of a card once its checkpoint closed. The unique key makes a redelivered event a no-op.
notifications = Table(
    "notifications", metadata,
    Column("id", String(36), primary_key=True),
    Column("checkpoint_id", String(36), nullable=False),
    Column("app", String(64), nullable=False),
    Column("event", String(80), nullable=False),  # opened | reminder:<event id> | deadline_near | closed[:<card event>]
    Column("kind", String(8), nullable=False),  # card | update
    Column("parent_id", String(36)),  # an update: the card it updates
    Column("channel", String(16), nullable=False),
    Column("address", Text, nullable=False),  # the platform's id; a webhook URL may carry a secret: never logged
    Column("address_key", String(64), nullable=False),  # sha256 of the address: the unique key, and what logs show
    Column("target_kind", String(8), nullable=False),  # user | group
    Column("reviewer", String(64)),  # whom the card's decision links decide as (None: no links)
    Column("status", String(12), nullable=False),  # pending | sending | sent | skipped | failed
    Column("lease_until", Float),  # while `sending`: until when the sender that claimed it holds it
    Column("lease_owner", String(64)),  # which job holds it (the same job, retried, may take it back)
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("ref", JSON),  # MessageRef.ref: what the platform needs to update the card
    Column("message_key", String(255)),  # the platform's message id, to find a card from a click
    Column("update_token", String(255)),  # from the deciding click: Feishu's delayed-update token, WeCom's code
    Column("closed", Boolean, nullable=False, default=False),  # the checkpoint closed: the card shows the outcome
    Column("event_at", Float),  # when the event that asked for it happened (notification latency)
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("checkpoint_id", "channel", "address_key", "event", name="uq_notification_once"),
    Index("ix_notifications_checkpoint", "checkpoint_id"),
    Index("ix_notifications_message", "channel", "message_key"),
)

# Every platform callback and link use, decided or refused (the record the issue asks for). A
# platform's action id is unique per channel: a retried callback or a double click finds its row.
notification_callbacks = Table(
    "notification_callbacks", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(16), nullable=False),
    Column("idem_key", String(200)),  # the platform's action id (NULL for refusals that carry none)
    Column("at", Float, nullable=False),
    Column("platform_user", String(255)),
    Column("reviewer", String(64)),
    Column("checkpoint_id", String(36)),
    Column("action", String(64)),
    Column("outcome", String(16), nullable=False),  # accepted | decided | rejected | refused | replayed | queued
    Column("code", String(64)),
    Column("message", Text),
    UniqueConstraint("channel", "idem_key", name="uq_notification_callback_key"),
    Index("ix_notification_callbacks_checkpoint", "checkpoint_id"),
)

# Used decision-link nonces: a link decides once.
notification_link_nonces = Table(
    "notification_link_nonces", metadata,
    Column("nonce", String(64), primary_key=True),
    Column("checkpoint_id", String(36), nullable=False),
    Column("reviewer", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("used_at", Float, nullable=False),
)

"""The ingest API the CLI needs: `GET /v1/checkpoints?id_prefix=` (a short id, resolved in the reviewer's
scope) and `GET /v1/runs?status=` checked."""
from __future__ import annotations

import pytest

from tests.unit.cli_support import cli_world


@pytest.fixture
async def world(sqlite_url):
    async for w in cli_world(sqlite_url):
        yield w


async def test_id_prefix_finds_the_checkpoints_whose_id_starts_so(world):
    a = world.add_checkpoint(id="3f2a9c11-8d0e-4b7a-9c55-0e6f1d2a7b10")
    b = world.add_checkpoint(id="3f2a9c99-0000-4000-8000-000000000000")
    world.add_checkpoint(id="3f2a9d00-0000-4000-8000-000000000000")
    status, data = await world.call("GET", "/v1/checkpoints", id_prefix="3f2a9c")
    assert status == 200 and data["total"] == 2
    assert [c["id"] for c in data["checkpoints"]] == [a["id"], b["id"]]
    assert "secret" not in data["checkpoints"][0] and "reply_to" not in data["checkpoints"][0]
    status, data = await world.call("GET", "/v1/checkpoints", id_prefix=a["id"])
    assert data["total"] == 1 and data["checkpoints"][0]["id"] == a["id"]


async def test_id_prefix_is_scoped_to_the_reviewers_apps(world):
    world.add_checkpoint(id="3f2a9c11-8d0e-4b7a-9c55-0e6f1d2a7b10", app="other")
    status, data = await world.call("GET", "/v1/checkpoints", id_prefix="3f2a9c")
    assert status == 200 and data == {"total": 0, "limit": 50, "offset": 0, "checkpoints": []}
    status, data = await world.call("GET", "/v1/checkpoints", reviewer="olga", id_prefix="3f2a9c")
    assert data["total"] == 1


async def test_id_prefix_treats_like_wildcards_as_plain_characters(world):
    world.add_checkpoint(id="run_1_draft_round_1")
    world.add_checkpoint(id="runX1Xdraft")
    status, data = await world.call("GET", "/v1/checkpoints", id_prefix="run_1_")
    assert [c["id"] for c in data["checkpoints"]] == ["run_1_draft_round_1"]


@pytest.mark.parametrize("params, message", [
    ({"id_prefix": "3f2a9"}, "at least 6"),
    ({"id_prefix": "3f2a9c%"}, "at least 6 id characters"),
    ({"id_prefix": "3f2a9c", "status": "open"}, "do not combine"),
    ({"id_prefix": "3f2a9c", "offset": "5"}, "do not combine"),
])
async def test_id_prefix_refuses_short_odd_or_combined_lookups(world, params, message):
    status, data = await world.call("GET", "/v1/checkpoints", **params)
    assert status == 400 and data["error"]["code"] == "invalid_field" and data["error"]["field"] == "id_prefix"
    assert message in data["error"]["message"]


async def test_runs_status_accepts_every_recorded_status_and_refuses_others(world):
    from shared.views import TRACKED_RUN_STATUSES

    for status_value in TRACKED_RUN_STATUSES:
        status, data = await world.call("GET", "/v1/runs", status=status_value)
        assert status == 200 and data["runs"] == []
    status, data = await world.call("GET", "/v1/runs", status="done")
    assert status == 400 and data["error"]["field"] == "status"

"""1.17 mode: Human Input select / file / file-list inputs, file upload, submitted_data; LLM reasoning chunks."""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from tests.difysim.config import SimConfig
from tests.difysim.testing import edge, in_process, node, register, topic_start

SHARED = Path(os.environ.get("HITL_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")
WRITER_LLM = SHARED / "dify-fixtures" / "17-dsl-export-import" / "writer-llm.draft-sent.json"
NEWER = SimConfig(dify_version="1.17")
RUN = {"inputs": {"topic": "Solar"}, "user": "alice"}
UPLOAD_KEYS = ["id", "name", "size", "extension", "mime_type", "created_by", "created_at"]


def data_events(text: str) -> list[dict]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def form_graph() -> dict:
    review = node("review", {
        "type": "human-input", "title": "Review",
        "form_content": "Note {{#$output.note#}} / {{#$output.choice#}} / {{#$output.doc#}} / {{#$output.refs#}}",
        "inputs": [{"type": "paragraph", "output_variable_name": "note"},
                   {"type": "select", "output_variable_name": "choice", "options": ["ship", "hold"]},
                   {"type": "file", "output_variable_name": "doc"},
                   {"type": "file-list", "output_variable_name": "refs", "max_length": 3}],
        "user_actions": [{"id": "approve", "title": "Approve"}],
        "delivery_methods": [{"id": "d", "enabled": True, "type": "webapp", "config": {}}],
        "timeout": 1, "timeout_unit": "hour"})
    end = node("end", {"type": "end", "outputs": [
        {"variable": name, "value_selector": ["review", name]}
        for name in ("note", "choice", "doc", "refs", "__rendered_content")]})
    return {"nodes": [topic_start(), review, end], "edges": [edge("start", "review"), edge("review", "end", "approve")]}


async def upload(client, auth, user: str = "alice", name: str = "report.pdf") -> dict:
    answer = await client.post("/v1/files/upload", headers=auth, data={"user": user},
                               files={"file": (name, b"%PDF-1.4 hello", "application/pdf")})
    assert answer.status_code == 201, answer.text
    return answer.json()


async def paused(client, auth) -> tuple[str, str]:
    answer = (await client.post("/v1/workflows/run", json=RUN, headers=auth)).json()
    return answer["workflow_run_id"], answer["data"]["reasons"][0]["form_token"]


def submission(upload_id: str, **overrides) -> dict:
    inputs = {"note": "", "choice": "ship", "doc": {"transfer_method": "local_file", "upload_file_id": upload_id},
              "refs": [{"transfer_method": "remote_url", "url": "https://example.com/a/spec.docx"},
                       {"transfer_method": "local_file", "upload_file_id": upload_id}]}
    return {"inputs": {**inputs, **overrides}, "action": "approve", "user": "alice"}


def with_form(steps, config: SimConfig = NEWER):
    async def main():
        async with in_process(config) as client:
            auth = await register(client, form_graph())
            return await steps(client, auth)

    return asyncio.run(main())


# ---------------------------------------------------------------- upload
def test_upload_answers_dify_upload_shape():
    async def steps(client, auth):
        return await upload(client, auth), client.sim.store.end_user(client.sim.store.apps_by_name["app"], "alice")

    answer, end_user = with_form(steps)
    assert list(answer) == UPLOAD_KEYS
    assert (answer["name"], answer["size"], answer["extension"], answer["mime_type"]) == \
        ("report.pdf", 14, "pdf", "application/pdf")
    assert answer["created_by"] == end_user.id


@pytest.mark.parametrize(("files", "status", "code"), [
    ({}, 400, "no_file_uploaded"),
    ({"file": ("a.txt", b"a"), "other": ("b.txt", b"b")}, 400, "too_many_files")])
def test_upload_refuses_no_file_or_several(files, status, code):
    async def steps(client, auth):
        return await client.post("/v1/files/upload", headers=auth, data={"user": "alice"}, files=files or None)

    answer = with_form(steps)
    assert (answer.status_code, answer.json()["code"]) == (status, code)


# ---------------------------------------------------------------- select / file / file-list
def test_a_form_with_select_file_and_file_list_inputs_accepts_valid_values():
    async def steps(client, auth):
        uploaded = await upload(client, auth)
        run_id, token = await paused(client, auth)
        answer = await client.post(f"/v1/form/human_input/{token}", headers=auth, json=submission(uploaded["id"]))
        await asyncio.gather(client.sim.store.runs[run_id].task, return_exceptions=True)
        record = (await client.get(f"/v1/workflows/run/{run_id}", headers=auth)).json()
        return uploaded, answer, record, client.sim.store.runs[run_id].events

    uploaded, answer, record, events = with_form(steps)
    assert (answer.status_code, answer.json()) == (200, {})
    outputs = record["outputs"]
    assert (outputs["note"], outputs["choice"]) == ("", "ship")
    assert (outputs["doc"]["transfer_method"], outputs["doc"]["related_id"], outputs["doc"]["filename"]) == \
        ("local_file", uploaded["id"], "report.pdf")
    assert outputs["doc"]["type"] == "document"
    assert [f["transfer_method"] for f in outputs["refs"]] == ["remote_url", "local_file"]
    assert outputs["refs"][0]["remote_url"] == "https://example.com/a/spec.docx"
    assert outputs["__rendered_content"] == "Note  / ship / [file] / [2 files]"
    filled = next(e["data"] for e in events if e["event"] == "human_input_form_filled")
    assert filled["submitted_data"] == submission(uploaded["id"])["inputs"]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"choice": "maybe"}, "Invalid value for input choice: 'maybe' is not one of ['ship', 'hold']"),
    ({"choice": ""}, "Missing required inputs: choice"),
    ({"doc": ""}, "Missing required inputs: doc"),
    ({"refs": []}, "Missing required inputs: refs"),
    ({"doc": {"transfer_method": "local_file", "upload_file_id": "nope"}},
     "Invalid value for input doc: upload file nope not found"),
    ({"doc": {"transfer_method": "remote_url", "url": "ftp://x/y.pdf"}},
     "Invalid value for input doc: url must be an http(s) URL"),
    ({"doc": {"transfer_method": "by_pigeon"}},
     "Invalid value for input doc: transfer_method must be one of ['local_file', 'remote_url']"),
    ({"refs": {"transfer_method": "remote_url", "url": "https://x/y"}},
     "Invalid value for input refs: a file list must be a list of files"),
    ({"refs": [{"transfer_method": "remote_url", "url": f"https://x/{i}.pdf"} for i in range(4)]},
     "Invalid value for input refs: at most 3 files are allowed")])
def test_a_bad_value_is_refused_as_invalid_form_data_and_the_form_stays_open(overrides, message):
    async def steps(client, auth):
        uploaded = await upload(client, auth)
        _, token = await paused(client, auth)
        bad = await client.post(f"/v1/form/human_input/{token}", headers=auth,
                                json=submission(uploaded["id"], **overrides))
        good = await client.post(f"/v1/form/human_input/{token}", headers=auth, json=submission(uploaded["id"]))
        return bad, good

    bad, good = with_form(steps)
    assert (bad.status_code, bad.json()) == (400, {"code": "invalid_form_data", "message": message, "status": 400})
    assert good.status_code == 200


def test_a_file_uploaded_by_another_user_is_refused():
    async def steps(client, auth):
        theirs = await upload(client, auth, user="mallory")
        _, token = await paused(client, auth)
        return await client.post(f"/v1/form/human_input/{token}", headers=auth, json=submission(theirs["id"]))

    answer = with_form(steps)
    assert answer.status_code == 400
    assert answer.json()["message"].endswith("was uploaded by another user")


def test_1_14_form_filled_event_has_no_submitted_data():
    async def steps(client, auth):
        run_id, token = await paused(client, auth)
        await client.post(f"/v1/form/human_input/{token}", headers=auth,
                          json={"inputs": {"edited": "x"}, "action": "approve", "user": "u"})
        await asyncio.gather(client.sim.store.runs[run_id].task, return_exceptions=True)
        return next(e["data"] for e in client.sim.store.runs[run_id].events if e["event"] == "human_input_form_filled")

    from tests.difysim.testing import review_graph

    async def main():
        async with in_process() as client:
            return await steps(client, await register(client, review_graph()))

    assert list(asyncio.run(main())) == ["node_id", "node_title", "rendered_content", "action_id", "action_text"]


# ---------------------------------------------------------------- LLM stand-in and reasoning chunks
def run_writer(config: SimConfig | None) -> list[dict]:
    graph = json.loads(WRITER_LLM.read_text())["graph"]

    async def main():
        async with in_process(config) as client:
            auth = await register(client, graph)
            stream = await client.post("/v1/workflows/run", headers=auth, json={**RUN, "response_mode": "streaming"})
            return data_events(stream.text)

    return asyncio.run(main())


def test_the_llm_stand_in_answers_with_its_rendered_user_prompt():
    events = run_writer(None)
    finished = events[-1]["data"]
    assert finished["status"] == "succeeded"
    draft = next(e["data"] for e in events if e["event"] == "node_finished" and e["data"]["node_id"] == "write_draft")
    assert draft["outputs"]["text"] == "Write a 150-word draft about Solar."
    assert draft["outputs"]["finish_reason"] == "stop"
    assert "reasoning_chunk" not in [e["event"] for e in events]  # 1.14 has none


def test_in_1_17_each_llm_node_streams_reasoning_chunks_before_its_node_finished():
    events = run_writer(NEWER)
    for node_id in ("write_draft", "polish"):
        order = [e["event"] for e in events if (e.get("data") or {}).get("node_id") == node_id]
        assert order[0] == "node_started" and order[-1] == "node_finished"
        assert set(order[1:-1]) == {"reasoning_chunk"} and len(order) > 3
        chunks = [e["data"] for e in events if e["event"] == "reasoning_chunk" and e["data"]["node_id"] == node_id]
        assert [c["is_final"] for c in chunks] == [False] * (len(chunks) - 1) + [True]
        assert list(chunks[0]) == ["reasoning", "node_id", "is_final"]
        finished = next(e["data"] for e in events if e["event"] == "node_finished" and e["data"]["node_id"] == node_id)
        assert "".join(c["reasoning"] for c in chunks) == finished["outputs"]["reasoning_content"]
    envelope = next(e for e in events if e["event"] == "reasoning_chunk")
    assert list(envelope) == ["event", "workflow_run_id", "task_id", "data"]

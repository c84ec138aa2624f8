"""The Dify client parses what real Dify 1.14.1 answered (shared/dify-fixtures) and maps its errors."""
from __future__ import annotations

import json

import httpx
import pytest

from shared.dify import (
    BlockingRunResponse,
    DifyAuthError,
    DifyBadRequest,
    DifyError,
    DifyForbidden,
    DifyFormError,
    DifyNotFound,
    DifyRateLimited,
    DifyServerError,
    DifyUnavailable,
    LogPage,
    RunRecord,
    StreamEvent,
    error_from_response,
    is_terminal,
)
from tests.unit.dify_support import (
    FIXTURES,
    RUN_ID_01,
    load,
    make_client,
    recorded_response,
    replay,
    run,
)

pytestmark = pytest.mark.skipif(not FIXTURES.exists(), reason=f"no Dify fixtures at {FIXTURES}")


# ---------------------------------------------------------------- models from the recordings
def test_blocking_run_answer_of_fixture_01_is_parsed():
    seen: list[httpx.Request] = []

    async def scenario():
        async with make_client(replay("01-http-ok-blocking/response.json", seen)) as dify:
            return await dify.run({"topic": "dify checkpoint test"}, user="fx-user-1")

    answer = run(scenario())
    assert isinstance(answer, BlockingRunResponse)
    assert (answer.task_id, answer.workflow_run_id) == ("69333a42-4004-4cbd-aa36-ba26c877638d", RUN_ID_01)
    assert answer.data.status == "succeeded" and answer.data.error is None and answer.data.total_steps == 3
    assert answer.data.outputs["status_code"] == 200
    assert json.loads(answer.data.outputs["body"])["action"] == "approve"
    assert answer.data.created_at == 1795612799 and not answer.is_paused
    request = seen[0]
    assert (request.method, str(request.url)) == ("POST", "http://dify.test/v1/workflows/run")
    assert request.headers["authorization"] == "Bearer app-test-key"
    assert json.loads(request.content) == load("01-http-ok-blocking/request.json")["body"]


def test_get_run_parses_the_inputs_json_string_and_keeps_sys_keys():
    async def scenario():
        async with make_client(replay("01-http-ok-blocking/get-run.json")) as dify:
            return await dify.get_run(RUN_ID_01)

    record = run(scenario())
    assert isinstance(record, RunRecord) and record.is_terminal
    assert record.inputs["topic"] == "dify checkpoint test"
    assert record.inputs["sys.user_id"] == "fx-user-1" and "sys.workflow_run_id" in record.inputs
    assert record.user_inputs() == {"topic": "dify checkpoint test"}
    assert record.outputs["status_code"] == 200 and record.elapsed_time == pytest.approx(0.198172)


def test_a_stopped_run_record_that_still_says_running_is_not_terminal():
    record = RunRecord.model_validate(load("11-stop/get-run.json")["body"])
    assert (record.status, record.finished_at, record.total_steps) == ("running", None, 0)
    assert not record.is_terminal


def test_an_unknown_run_status_is_kept_and_is_not_terminal():
    body = dict(load("01-http-ok-blocking/get-run.json")["body"], status="hibernating", new_field=1)
    record = RunRecord.model_validate(body)
    assert record.status == "hibernating" and record.new_field == 1
    assert not is_terminal("hibernating")


def test_paused_is_not_terminal_and_the_four_end_states_are():
    assert [is_terminal(s) for s in ("succeeded", "failed", "stopped", "partial-succeeded")] == [True] * 4
    assert not any(is_terminal(s) for s in ("running", "paused", "scheduled", None))


def test_inputs_that_are_not_json_do_not_crash_the_run_record():
    record = RunRecord.model_validate({"id": RUN_ID_01, "status": "running", "inputs": "{not json"})
    assert record.inputs == {"__unparsed__": "{not json"} and record.user_inputs() == record.inputs


def test_null_counters_and_string_outputs_do_not_break_a_run_record():
    record = RunRecord.model_validate({"id": RUN_ID_01, "status": "failed", "inputs": {"topic": "x"},
                                       "outputs": "{\"a\": 1}", "total_steps": None, "total_tokens": None})
    assert record.outputs == {"a": 1} and record.total_steps is None and record.user_inputs() == {"topic": "x"}


def test_paused_blocking_answer_of_fixture_08_carries_reasons_and_form_token():
    answer = BlockingRunResponse.model_validate(load("08-human-input-blocking/response.json")["body"])
    assert answer.is_paused and not is_terminal(answer.status)
    assert answer.data.paused_nodes == ["review"] and answer.data.finished_at is None
    reason = answer.data.reasons[0]
    assert (reason.type, reason.node_id, reason.form_token) == ("human_input_required", "review",
                                                                "ELFCJzgGOkihCCpjYpyUbi")
    assert [a["id"] for a in reason.actions] == ["approve", "revise", "abort"]
    assert reason.resolved_default_values == {"edited": "Quarterly report draft"}
    assert reason.expiration_time == 1795616596


def test_human_input_form_of_fixture_08_is_read_and_submitted():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        name = "form-get.json" if request.method == "GET" else "form-submit-approve.json"
        return recorded_response(f"08-human-input-blocking/{name}")

    async def scenario():
        async with make_client(handler) as dify:
            form = await dify.form_get("ELFCJzgGOkihCCpjYpyUbi")
            answer = await dify.form_submit("ELFCJzgGOkihCCpjYpyUbi", {"edited": "v2"}, "approve", "fx-user-hi")
            return form, answer

    form, answer = run(scenario())
    assert [a["id"] for a in form.user_actions] == ["approve", "revise", "abort"]
    assert form.inputs[0]["output_variable_name"] == "edited" and form.expiration_time == 1795616596
    assert answer == {}
    assert seen[1].url.path == "/v1/form/human_input/ELFCJzgGOkihCCpjYpyUbi"
    assert json.loads(seen[1].content) == {"inputs": {"edited": "v2"}, "action": "approve", "user": "fx-user-hi"}


def test_logs_pages_of_fixture_10_are_parsed_and_walked_until_has_more_is_false():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return recorded_response(f"10-logs/app01-nofilter-limit5-page{request.url.params['page']}.json")

    async def scenario():
        async with make_client(handler) as dify:
            first = await dify.logs(page=1, limit=5)
            walked = [entry async for entry in dify.iter_logs("2026-11-25T13:30:08+00:00", limit=5, user="u1")]
            return first, walked

    first, walked = run(scenario())
    assert (first.page, first.limit, first.total, first.has_more, len(first.data)) == (1, 5, 7, True, 5)
    entry = first.data[0]
    assert entry.workflow_run.status == "succeeded" and entry.workflow_run.triggered_from == "app-run"
    assert entry.workflow_run.version == "2026-11-25 13:19:58.615717" and entry.workflow_run.exceptions_count == 0
    assert entry.created_by_end_user.session_id == "fx-log-user-1" and entry.created_by_account is None
    assert len(walked) == 7 and len({e.id for e in walked}) == 7
    params = seen[-1].url.params
    assert (params["page"], params["limit"], params["created_at__after"],
            params["created_by_end_user_session_id"]) == ("2", "5", "2026-11-25T13:30:08+00:00", "u1")


def recorded_log_page(name: str) -> LogPage:
    return LogPage.model_validate(load(f"10-logs/{name}.json")["response"]["body"])


def test_logs_of_paused_partial_and_stuck_runs_keep_their_status():
    def statuses(name: str) -> list[str]:
        return [entry.workflow_run.status for entry in recorded_log_page(name).data]

    assert statuses("app03-partial-succeeded-nofilter") == ["partial-succeeded"]
    assert statuses("app08-human-input-nofilter") == ["paused", "succeeded"]
    assert statuses("app11-stopped-nofilter") == ["running"]  # stopped, but Dify never wrote it down


def test_logs_refuse_a_status_dify_rejects_without_calling_it():
    seen: list[httpx.Request] = []

    async def scenario():
        async with make_client(replay("10-logs/app01-status-running.json", seen)) as dify:
            for status in ("running", "paused", "partial-succeeded"):
                with pytest.raises(ValueError, match="succeeded"):
                    await dify.logs(status=status)

    run(scenario())
    assert seen == []


def test_logs_send_datetimes_as_iso_8601_with_utc_for_naive_ones():
    from datetime import datetime, timedelta, timezone
    seen: list[httpx.Request] = []

    async def scenario():
        async with make_client(replay("10-logs/app01-created_at__after.json", seen)) as dify:
            page = await dify.logs(created_at_after=datetime(2026, 11, 25, 13, 30, 8),
                                   created_at_before=datetime(2026, 11, 25, 15, 0, tzinfo=timezone(timedelta(hours=2))),
                                   status="succeeded")
            return page

    page = run(scenario())
    assert page.total == 3
    params = seen[0].url.params
    assert params["created_at__after"] == "2026-11-25T13:30:08+00:00"
    assert params["created_at__before"] == "2026-11-25T15:00:00+02:00" and params["status"] == "succeeded"


def test_stop_answers_the_recorded_success_and_posts_the_user():
    seen: list[httpx.Request] = []

    async def scenario():
        async with make_client(replay("11-stop/stop.json", seen)) as dify:
            return await dify.stop("24cd06d8-37a8-402e-a842-756ce74acbff", "fx-user-1")

    assert run(scenario()) == {"result": "success"}
    assert seen[0].url.path == "/v1/workflows/tasks/24cd06d8-37a8-402e-a842-756ce74acbff/stop"
    assert json.loads(seen[0].content) == {"user": "fx-user-1"}


# ---------------------------------------------------------------- errors from the recordings
RECORDED_ERRORS = [
    ("12-errors/bad-api-key-run.json", DifyAuthError, "unauthorized"),
    ("12-errors/no-auth-header.json", DifyAuthError, "unauthorized"),
    ("12-errors/wrong-auth-scheme.json", DifyAuthError, "unauthorized"),
    ("12-errors/unknown-run-id.json", DifyNotFound, "not_found"),
    ("12-errors/run-of-other-app.json", DifyNotFound, "not_found"),
    ("12-errors/events-unknown-run.json", DifyNotFound, "not_found"),
    ("12-errors/unknown-path.json", DifyNotFound, "unknown_path"),
    ("12-errors/malformed-run-id.json", DifyServerError, "unknown"),
    ("12-errors/run-without-user.json", DifyBadRequest, "invalid_param"),
    ("12-errors/run-bad-response-mode.json", DifyBadRequest, "invalid_param"),
    ("12-errors/run-input-too-long.json", DifyBadRequest, "invalid_param"),
    ("12-errors/logs-limit-1000.json", DifyBadRequest, "invalid_param"),
    ("12-errors/logs-bad-date.json", DifyBadRequest, "invalid_param"),
    ("12-errors/stop-without-user.json", DifyBadRequest, "invalid_param"),
    ("08-human-input-blocking/form-submit-again.json", DifyFormError, "human_input_form_submitted"),
    ("08-human-input-blocking/form-get-after-submit.json", DifyFormError, "human_input_form_submitted"),
    ("13-human-input-timeout/form-submit-expired.json", DifyFormError, "human_input_form_expired"),
    ("13-human-input-timeout/form-get-expired.json", DifyFormError, "human_input_form_expired"),
    ("09-human-input-streaming/form-submit-no-user.json", DifyBadRequest, "invalid_param"),
    ("09-human-input-streaming/form-submit-unknown-action.json", DifyBadRequest, "invalid_form_data"),
    ("09-human-input-streaming/form-submit-missing-input.json", DifyBadRequest, "invalid_form_data"),
    ("09-human-input-streaming/form-submit-bogus-token.json", DifyNotFound, "not_found"),
    ("09-human-input-streaming/form-get-with-other-app-key.json", DifyNotFound, "not_found"),
]


@pytest.mark.parametrize("name, error_class, code", RECORDED_ERRORS, ids=[n for n, _, _ in RECORDED_ERRORS])
def test_recorded_error_answers_map_to_their_exception(name, error_class, code):
    response = recorded_response(name)
    error = error_from_response(response.status_code, response.headers, response.content, "x")
    assert type(error) is error_class and error.code == code and error.status == response.status_code
    if code != "unknown_path":
        assert error.message == load(name)["response"]["body"]["message"]


def call_for(name: str):
    """The client call that produced a recorded error, from the recorded request."""
    request = load(name)["request"]
    url, body = httpx.URL(request["url"]), request.get("body") or {}
    path = url.path
    if path == "/v1/workflows/run":
        return lambda dify: dify.run(body.get("inputs", {}), body.get("user") or "u")
    if path.startswith("/v1/workflows/run/"):
        return lambda dify: dify.get_run(path.rsplit("/", 1)[1])
    if path == "/v1/workflows/logs":
        return lambda dify: dify.logs()
    if path.endswith("/stop"):
        return lambda dify: dify.stop(path.split("/")[-2], "u")
    if path.endswith("/events"):
        return lambda dify: _drain(dify.events(path.split("/")[-2], "u"))
    if path.startswith("/v1/form/human_input/"):
        token = path.rsplit("/", 1)[1]
        if request["method"] == "GET":
            return lambda dify: dify.form_get(token)
        return lambda dify: dify.form_submit(token, body.get("inputs", {}), body.get("action", "a"), "u")
    return lambda dify: dify.requester.call("GET", path, "unknown", idempotent=False)


async def _drain(stream):
    return [event async for event in stream]


@pytest.mark.parametrize("name, error_class, code",
                         [e for e in RECORDED_ERRORS if e[0] != "12-errors/malformed-run-id.json"],
                         ids=[n for n, _, _ in RECORDED_ERRORS if n != "12-errors/malformed-run-id.json"])
def test_client_calls_raise_the_recorded_errors(name, error_class, code):
    async def scenario():
        async with make_client(replay(name), retries=0) as dify:
            with pytest.raises(error_class) as caught:
                await call_for(name)(dify)
            return caught.value

    assert run(scenario()).code == code


@pytest.mark.parametrize("status, body, content_type, error_class, code", [
    (403, b'{"code":"forbidden","message":"app disabled","status":403}', "application/json", DifyForbidden,
     "forbidden"),
    (429, b'{"code":"rate_limit_error","message":"quota","status":429}', "application/json", DifyRateLimited,
     "rate_limit_error"),
    (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html", DifyUnavailable, "bad_gateway"),
    (503, b"\x00\xff garbage", "application/octet-stream", DifyUnavailable, "server_unavailable"),
    (500, b"", "text/plain", DifyUnavailable, "server_unavailable"),
    (503, b'{"code":"service_unavailable","message":"Service Unavailable","status":503}', "application/json",
     DifyServerError, "service_unavailable"),
    (409, b"not json", "text/plain", DifyError, "unexpected_response"),
])
def test_odd_error_bodies_never_crash_the_mapping(status, body, content_type, error_class, code):
    error = error_from_response(status, httpx.Headers({"content-type": content_type}), body)
    assert type(error) is error_class and error.code == code and error.status == status


def test_a_2xx_answer_that_is_not_json_is_reported_unavailable():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/html"}, content=b"<html>login</html>")

    async def scenario():
        async with make_client(handler, retries=0) as dify:
            with pytest.raises(DifyUnavailable) as caught:
                await dify.get_run(RUN_ID_01)
            return caught.value

    assert run(scenario()).code == "invalid_response"


def test_stream_event_model_keeps_unknown_event_kinds():
    event = StreamEvent.model_validate({"event": "agent_log", "workflow_run_id": "r", "data": {"x": 1}, "extra": 2})
    assert (event.event, event.extra, event.run_status) == ("agent_log", 2, None)

"""The console DSL import replayed from fixture 17, the console app routes, and /_sim/apps with a DSL."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from pathlib import Path

import httpx
import pytest
import yaml

from tests.difysim.config import SimConfig
from tests.difysim.testing import in_process

SHARED = Path(os.environ.get("HITL_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")
F17 = SHARED / "dify-fixtures" / "17-dsl-export-import"
CONSOLE = {"Authorization": "Bearer difysim-console"}
IMPORTS = "/console/api/apps/imports"
BAD_CASES = sorted(p.name for p in F17.glob("import-bad-*.json"))


def recorded(name: str) -> dict:
    return json.loads((F17 / name).read_text())


def text(name: str) -> str:
    return (F17 / name).read_text()


def writer_with_version(version: str | None) -> str:
    """writer-llm.export.yml with another `version:` line (None: without version and kind, as recorded)."""
    source = text("writer-llm.export.yml")
    if version is None:
        return re.sub(r"^(version|kind): .*\n", "", source, flags=re.M)
    return re.sub(r"^version: .*$", f"version: {version}", source, flags=re.M)


def request_body(case: str) -> dict:
    """The recorded request body with the YAML it points to put back in."""
    call = recorded(case)
    body = dict(call["request"]["body"])
    sent = F17 / case.replace(".json", ".yml")
    if "yaml_content" in body and body["yaml_content"].startswith("<contents of") and sent.exists():
        body["yaml_content"] = sent.read_text()
    return body


def without_id(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in ("id", "app_id")}


def console(steps, config: SimConfig | None = None, node_http: httpx.AsyncClient | None = None):
    async def main():
        async with in_process(config, node_http=node_http) as client:
            return await steps(client)

    return asyncio.run(main())


async def import_yaml(client, content: str, **extra) -> httpx.Response:
    return await client.post(IMPORTS, headers=CONSOLE, json={"mode": "yaml-content", "yaml_content": content, **extra})


async def draft(client, app_id: str) -> dict:
    answer = await client.get(f"/console/api/apps/{app_id}/workflows/draft", headers=CONSOLE)
    assert answer.status_code == 200, answer.text
    return answer.json()


# ---------------------------------------------------------------- fixture 17's import answers
@pytest.mark.parametrize("case", BAD_CASES)
def test_every_recorded_import_answers_as_recorded(case):
    expected = recorded(case)["response"]

    async def steps(client):
        return await client.post(IMPORTS, headers=CONSOLE, json=request_body(case))

    answer = console(steps)
    assert answer.status_code == expected["status"]
    body, wanted = answer.json(), expected["body"]
    if "code" in wanted:  # the plain error envelope: no Import object
        assert body == wanted
    else:
        assert list(body) == list(wanted) and without_id(body) == without_id(wanted)
        assert (body["app_id"] is None) == (wanted["app_id"] is None)
    assert answer.headers["x-version"] == "1.14.1"


@pytest.mark.parametrize(("version", "case"), [("0.6.0", "import-version-0.6.0.json"),
                                               ("0.5.0", "import-version-0.5.0.json"),
                                               ("0.1.0", "import-version-0.1.0.json"),
                                               (None, "import-version-missing.json")])
def test_an_accepted_version_imports_at_once_with_its_recorded_status(version, case):
    async def steps(client):
        answer = await import_yaml(client, writer_with_version(version))
        return answer, await draft(client, answer.json()["app_id"])

    answer, stored = console(steps)
    expected = recorded(case)["response"]
    assert (answer.status_code, without_id(answer.json())) == (expected["status"], without_id(expected["body"]))
    assert stored["graph"] == yaml.safe_load(writer_with_version(version))["workflow"]["graph"]


@pytest.mark.parametrize("version", ["0.6.1", "0.7.0", "1.0.0"])
def test_a_newer_version_waits_for_a_confirmation_that_works_once(version):
    call = recorded(f"import-version-{version}.json")

    async def steps(client):
        pending = await import_yaml(client, writer_with_version(version))
        apps_before = len(client.sim.store.apps_by_id)
        import_id = pending.json()["id"]
        confirm = await client.post(f"{IMPORTS}/{import_id}/confirm", headers=CONSOLE)
        again = await client.post(f"{IMPORTS}/{import_id}/confirm", headers=CONSOLE)
        return pending, apps_before, confirm, again

    pending, apps_before, confirm, again = console(steps)
    assert (pending.status_code, without_id(pending.json())) == (202, without_id(call["response"]["body"]))
    assert apps_before == 0  # nothing is created before the confirmation
    assert (confirm.status_code, without_id(confirm.json())) == (200, without_id(call["confirm"]["response"]["body"]))
    assert (again.status_code, without_id(again.json())) == (400, without_id(call["confirm_again"]["response"]["body"]))
    assert again.json()["id"] == pending.json()["id"]


def test_confirming_an_unknown_import_fails_as_recorded():
    call = recorded("import-confirm-unknown-id.json")

    async def steps(client):
        return await client.post(call["request"]["url"], headers=CONSOLE)

    answer = console(steps)
    assert (answer.status_code, answer.json()) == (call["response"]["status"], call["response"]["body"])


# ---------------------------------------------------------------- what an import stores
def test_the_imported_graph_is_stored_unchanged_and_an_overwrite_keeps_the_app():
    modified = text("writer-llm.with-checkpoint.yml")

    async def steps(client):
        first = (await import_yaml(client, text("writer-llm.export.yml"))).json()
        overwrite = (await import_yaml(client, modified, app_id=first["app_id"])).json()
        stored = await draft(client, first["app_id"])
        return first, overwrite, stored, client.sim.store.apps_by_id[first["app_id"]].name

    first, overwrite, stored, name = console(steps)
    sent = yaml.safe_load(modified)["workflow"]
    assert (overwrite["status"], overwrite["app_id"]) == ("completed", first["app_id"])
    assert json.dumps(stored["graph"]) == json.dumps(sent["graph"])  # key order too
    assert (stored["features"], stored["environment_variables"]) == (sent["features"], sent["environment_variables"])
    assert list(stored) == recorded("import-modified.json")["draft_comparison"]["draft_top_level_keys"]
    assert name == yaml.safe_load(modified)["app"]["name"]


def test_an_edge_to_a_missing_node_is_accepted_published_and_the_app_runs():
    async def steps(client):
        imported = (await import_yaml(client, text("import-bad-edge-to-missing-node.yml"))).json()
        app_id = imported["app_id"]
        unpublished_key = (await client.post(f"/console/api/apps/{app_id}/api-keys", headers=CONSOLE)).json()["token"]
        before = await client.post("/v1/workflows/run", headers={"Authorization": f"Bearer {unpublished_key}"},
                                   json={"inputs": {"topic": "x"}, "user": "u"})
        published = await client.post(f"/console/api/apps/{app_id}/workflows/publish", headers=CONSOLE, json={})
        run = await client.post("/v1/workflows/run", headers={"Authorization": f"Bearer {unpublished_key}"},
                                json={"inputs": {"topic": "x"}, "user": "u"})
        return imported, await draft(client, app_id), before, published, run

    imported, stored, before, published, run = console(steps)
    assert imported["status"] == "completed"
    assert any(e["target"] == "ghost_node" for e in stored["graph"]["edges"])
    assert (before.status_code, before.json()["message"]) == (400, "Workflow not published")
    assert published.status_code == 200 and set(published.json()) == {"result", "created_at"}
    assert run.json()["data"]["status"] == "succeeded"


def test_check_dependencies_lists_nothing_missing():
    async def steps(client):
        app_id = (await import_yaml(client, text("writer-llm.export.yml"))).json()["app_id"]
        return await client.get(f"{IMPORTS}/{app_id}/check-dependencies", headers=CONSOLE)

    assert console(steps).json() == recorded("import-check-dependencies.json")["response"]["body"]


def test_an_import_by_url_fetches_the_yaml():
    served = text("writer-llm.export.yml")
    node_http = httpx.AsyncClient(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, text=served) if request.url.path == "/app.yml" else httpx.Response(404)))

    async def steps(client):
        good = await client.post(IMPORTS, headers=CONSOLE, json={"mode": "yaml-url",
                                                                 "yaml_url": "http://dsl.test/app.yml"})
        bad = await client.post(IMPORTS, headers=CONSOLE, json={"mode": "yaml-url", "yaml_url": "http://dsl.test/x"})
        return good, bad

    good, bad = console(steps, node_http=node_http)
    assert (good.status_code, good.json()["status"]) == (200, "completed")
    assert bad.status_code == 400 and bad.json()["error"].startswith("Error fetching YAML from URL:")


def test_export_is_refused_as_on_a_dify_without_plugin_daemon():
    expected = recorded("writer-llm.export-response.json")["response"]

    async def steps(client):
        app_id = (await import_yaml(client, text("writer-llm.export.yml"))).json()["app_id"]
        return await client.get(f"/console/api/apps/{app_id}/export?include_secret=false", headers=CONSOLE)

    answer = console(steps)
    assert (answer.status_code, answer.json()["code"]) == (expected["status"], expected["body"]["code"])
    assert answer.json()["message"].startswith("Failed to request plugin daemon")


# ---------------------------------------------------------------- console auth
def test_the_console_needs_the_token_or_the_login_cookies_with_csrf():
    async def steps(client):
        nothing = await client.post(IMPORTS, json={"mode": "yaml-content"})
        wrong = await client.post(IMPORTS, headers={"Authorization": "Bearer nope"}, json={"mode": "yaml-content"})
        bad_login = await client.post("/console/api/login", json={"email": "a@b.c", "password": "x"})
        login = await client.post("/console/api/login", json={
            "email": "a@b.c", "password": base64.b64encode(b"difysim-console").decode(), "remember_me": True})
        cookies = dict(login.cookies)
        no_csrf = await client.post(IMPORTS, json={"mode": "yaml-content"})
        with_csrf = await client.post(IMPORTS, headers={"X-CSRF-Token": cookies["csrf_token"]},
                                      json={"mode": "yaml-content"})
        return nothing, wrong, bad_login, login, no_csrf, with_csrf

    nothing, wrong, bad_login, login, no_csrf, with_csrf = console(steps)
    assert (nothing.status_code, wrong.status_code, bad_login.status_code) == (401, 401, 401)
    assert login.status_code == 200 and {"access_token", "refresh_token", "csrf_token"} <= set(login.cookies)
    assert no_csrf.status_code == 401
    assert (with_csrf.status_code, with_csrf.json()["error"]) == \
        (400, "yaml_content is required when import_mode is yaml-content")


# ---------------------------------------------------------------- /_sim/apps with a DSL
def test_sim_apps_takes_a_dsl_and_the_key_runs_it():
    writer = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200, text="Draft 1.")))

    async def steps(client):
        registered = await client.post("/_sim/apps", json={"name": "loop-human", "dsl": text("loop-human.export.yml")})
        key = registered.json()["api_key"]
        run = await client.post("/v1/workflows/run", headers={"Authorization": f"Bearer {key}"},
                                json={"inputs": {"topic": "x"}, "user": "u"})
        bad = await client.post("/_sim/apps", json={"name": "bad", "dsl": text("import-bad-missing-app.yml")})
        return registered, run, bad

    registered, run, bad = console(steps, node_http=writer)
    assert registered.status_code == 201
    assert set(registered.json()) == {"app_id", "api_key", "workflow_id", "import_status"}
    assert registered.json()["import_status"] == "completed"
    assert (run.json()["data"]["status"], run.json()["data"]["paused_nodes"]) == ("paused", ["review"])
    assert (bad.status_code, bad.json()["error"]) == (400, "DSL import failed: Missing app data in YAML content")


@pytest.mark.parametrize(("version", "status"), [("1.14", 400), ("1.17", 200)])
def test_a_dsl_with_a_select_input_imports_only_in_1_17(version, status):
    dsl = yaml.safe_load(text("loop-human.export.yml"))
    review = next(n for n in dsl["workflow"]["graph"]["nodes"] if n["data"]["type"] == "human-input")
    review["data"]["inputs"].append({"type": "select", "output_variable_name": "choice", "options": ["a", "b"]})

    async def steps(client):
        return await import_yaml(client, yaml.safe_dump(dsl, allow_unicode=True))

    answer = console(steps, SimConfig(dify_version=version))
    assert answer.status_code == status
    if status == 400:
        assert answer.json()["error"].startswith("Invalid HumanInput node data: 1 validation error for "
                                                 "HumanInputNodeData\ninputs.1.type\n  Input should be 'text_input' "
                                                 "or 'paragraph'")

"""The --dify-version switch: 1.14 (the default, as recorded) and 1.17, and what each one refuses."""
from __future__ import annotations

import asyncio

import pytest

from tests.difysim.config import SimConfig
from tests.difysim.testing import echo_graph, in_process, register, review_graph


def graph_with_input(kind: str) -> dict:
    graph = review_graph()
    review = next(n for n in graph["nodes"] if n["id"] == "review")
    review["data"]["inputs"].append({"type": kind, "output_variable_name": "extra", "options": ["a", "b"]})
    return graph


def register_answer(version: str | None, graph: dict):
    async def scenario():
        config = SimConfig(dify_version=version) if version else SimConfig()
        async with in_process(config) as client:
            return await client.post("/_sim/apps", json={"name": "app", "graph": graph})

    return asyncio.run(scenario())


def test_the_default_version_is_1_14():
    assert SimConfig().dify_version == "1.14"
    assert SimConfig().version.release == "1.14.1"


def test_an_unknown_version_is_refused_at_start():
    with pytest.raises(ValueError, match="unknown Dify version '1.99'"):
        SimConfig(dify_version="1.99")


@pytest.mark.parametrize(("version", "release"), [("1.14", "1.14.1"), ("1.17", "1.17.1")])
def test_the_service_api_answers_with_the_version_header_of_the_chosen_release(version, release):
    async def scenario():
        async with in_process(SimConfig(dify_version=version)) as client:
            auth = await register(client, echo_graph())
            return await client.get("/v1/info", headers=auth)

    assert asyncio.run(scenario()).headers["x-version"] == release


@pytest.mark.parametrize("kind", ["select", "file", "file-list"])
def test_1_14_refuses_a_human_input_type_it_does_not_have_when_the_app_is_registered(kind):
    answer = register_answer("1.14", graph_with_input(kind))
    assert answer.status_code == 400
    message = answer.json()["error"]
    assert f"input 'extra' has type '{kind}', which Dify 1.14.1 does not have" in message
    assert "--dify-version 1.17" in message


@pytest.mark.parametrize("kind", ["select", "file", "file-list"])
def test_1_17_accepts_the_newer_human_input_types(kind):
    assert register_answer("1.17", graph_with_input(kind)).status_code == 201


def test_1_14_still_accepts_paragraph_and_text_input():
    assert register_answer(None, graph_with_input("text_input")).status_code == 201


def test_sim_config_changes_stop_delay_and_sandbox_but_not_the_version():
    async def scenario():
        async with in_process(SimConfig(dify_version="1.17")) as client:
            return (await client.post("/_sim/config", json={"stop_delay_s": 0.25, "no_sandbox": True,
                                                            "dify_version": "1.14"})).json()

    settings = asyncio.run(scenario())
    assert (settings["stop_delay_s"], settings["no_sandbox"]) == (0.25, True)
    assert (settings["dify_version"], settings["dify_release"]) == ("1.17", "1.17.1")
    assert "console_token" not in settings

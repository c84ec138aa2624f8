"""Payload builders for the SSE events, shaped exactly like Dify 1.14.1's (see the fixtures)."""
from __future__ import annotations

from typing import Any


def node_base(execution_id: str, node: dict) -> dict:
    data = node.get("data") or {}
    return {"id": execution_id, "node_id": node["id"], "node_type": data.get("type"), "title": data.get("title", ""),
            # 1.14.1 always sends index 1 and no predecessor (DIFY.md).
            "index": 1, "predecessor_node_id": None}


def node_started(execution_id: str, node: dict, created_at: int, loop_id: str | None,
                 iteration_id: str | None = None) -> dict:
    return {**node_base(execution_id, node), "inputs": None, "inputs_truncated": False, "created_at": created_at,
            "extras": {}, "iteration_id": iteration_id, "loop_id": loop_id, "agent_strategy": None}


def node_finished(execution_id: str, node: dict, *, created_at: int, finished_at: int, loop_id: str | None,
                  inputs: Any, process_data: Any, outputs: Any, status: str, error: str | None,
                  elapsed_time: float, execution_metadata: dict | None, iteration_id: str | None = None) -> dict:
    return {**node_base(execution_id, node),
            "inputs": inputs, "inputs_truncated": False,
            "process_data": process_data, "process_data_truncated": False,
            "outputs": outputs, "outputs_truncated": False,
            "status": status, "error": error, "elapsed_time": round(elapsed_time, 6),
            "execution_metadata": execution_metadata, "created_at": created_at, "finished_at": finished_at,
            "files": [], "iteration_id": iteration_id, "loop_id": loop_id}


def loop_started(node: dict, created_at: int, inputs: dict, loop_length: int) -> dict:
    data = node.get("data") or {}
    return {"id": node["id"], "node_id": node["id"], "node_type": "loop", "title": data.get("title", ""),
            "created_at": created_at, "extras": {}, "metadata": {"loop_length": loop_length},
            "inputs": inputs, "inputs_truncated": False}


def loop_next(node: dict, created_at: int, index: int) -> dict:
    data = node.get("data") or {}
    return {"id": node["id"], "node_id": node["id"], "node_type": "loop", "title": data.get("title", ""),
            "index": index, "created_at": created_at, "pre_loop_output": {}, "extras": {}}


def loop_completed(node: dict, *, created_at: int, finished_at: int, inputs: dict, outputs: dict, status: str,
                   error: str | None, elapsed_time: float, steps: int, durations: dict, variables: dict,
                   completed_reason: str | None) -> dict:
    data = node.get("data") or {}
    metadata = {"total_tokens": 0, "total_price": "0.0", "currency": "USD", "loop_duration_map": durations,
                "loop_variable_map": variables}
    if completed_reason:
        metadata["completed_reason"] = completed_reason
    return {"id": node["id"], "node_id": node["id"], "node_type": "loop", "title": data.get("title", ""),
            "outputs": outputs, "outputs_truncated": False, "created_at": created_at, "extras": {},
            "inputs": inputs, "inputs_truncated": False, "status": status, "error": error,
            "elapsed_time": round(elapsed_time, 6), "total_tokens": 0, "execution_metadata": metadata,
            "finished_at": finished_at, "steps": steps}


def text_chunk(text: str, selector: list[str]) -> dict:
    return {"text": text, "from_variable_selector": list(selector)}


def iteration_started(node: dict, created_at: int, inputs: dict, iterator_length: int) -> dict:
    data = node.get("data") or {}
    return {"id": node["id"], "node_id": node["id"], "node_type": "iteration", "title": data.get("title", ""),
            "created_at": created_at, "extras": {}, "metadata": {"iterator_length": iterator_length},
            "inputs": inputs, "inputs_truncated": False}


def iteration_next(node: dict, created_at: int, index: int, pre_iteration_output: Any) -> dict:
    data = node.get("data") or {}
    return {"id": node["id"], "node_id": node["id"], "node_type": "iteration", "title": data.get("title", ""),
            "index": index, "created_at": created_at, "pre_iteration_output": pre_iteration_output, "extras": {}}


def iteration_completed(node: dict, *, created_at: int, finished_at: int, inputs: dict, outputs: dict, status: str,
                        error: str | None, elapsed_time: float, steps: int, durations: dict) -> dict:
    data = node.get("data") or {}
    metadata = {"total_tokens": 0, "total_price": "0.0", "currency": "USD", "iteration_duration_map": durations}
    return {"id": node["id"], "node_id": node["id"], "node_type": "iteration", "title": data.get("title", ""),
            "outputs": outputs, "outputs_truncated": False, "created_at": created_at, "extras": {},
            "inputs": inputs, "inputs_truncated": False, "status": status, "error": error,
            "elapsed_time": round(elapsed_time, 6), "total_tokens": 0, "execution_metadata": metadata,
            "finished_at": finished_at, "steps": steps}

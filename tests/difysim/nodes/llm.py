"""A stand-in for Dify's LLM node (`type: llm`): the simulator has no model provider, so it answers itself.

The reply is deterministic: the rendered text of the node's last `user` message in
`prompt_template` (a chat-mode list of `{role, text}`, or a completion-mode `{text}`), so that what
comes downstream follows from the inputs. Outputs are those of Dify's LLM node: `text`,
`reasoning_content`, `usage` (zeros: the simulator counts no tokens) and `finish_reason`.

In 1.17 mode the node streams its "reasoning" before its node_finished, as newer Dify does for
reasoning models: `reasoning_chunk` events whose data is `{reasoning, node_id, is_final}` — the
shape in Dify's API reference (docs.dify.ai, "Stream Workflow Events", the `reasoning_chunk`
example), a last chunk with `reasoning: ""` and `is_final: true` closing it.
"""
from __future__ import annotations

import asyncio

from ..templates import render
from .base import NodeContext, NodeResult

WORDS_PER_CHUNK = 4
USAGE = {"prompt_tokens": 0, "prompt_unit_price": "0", "prompt_price_unit": "0", "prompt_price": "0",
         "completion_tokens": 0, "completion_unit_price": "0", "completion_price_unit": "0", "completion_price": "0",
         "total_tokens": 0, "total_price": "0", "currency": "USD", "latency": 0.0}


def prompt_messages(ctx: NodeContext) -> list[dict]:
    template = ctx.data.get("prompt_template") or []
    messages = template if isinstance(template, list) else [{"role": "user", "text": template.get("text", "")}]
    return [{"role": m.get("role", "user"), "text": render(m.get("text") or "", ctx.pool)}
            for m in messages if isinstance(m, dict)]


def reasoning_about(reply: str) -> str:
    excerpt = " ".join(reply.split()[:12])
    return f"The request asks for: {excerpt}. I will answer it directly."


async def stream_reasoning(ctx: NodeContext, reasoning: str) -> None:
    words = reasoning.split(" ")
    for start in range(0, len(words), WORDS_PER_CHUNK):
        piece = " ".join(words[start:start + WORDS_PER_CHUNK]) + (" " if start + WORDS_PER_CHUNK < len(words) else "")
        ctx.run.publish("reasoning_chunk", {"reasoning": piece, "node_id": ctx.node_id, "is_final": False})
        await asyncio.sleep(0)  # let listeners see the chunks one by one, as a model would send them
    ctx.run.publish("reasoning_chunk", {"reasoning": "", "node_id": ctx.node_id, "is_final": True})


async def run_llm(ctx: NodeContext) -> NodeResult:
    messages = prompt_messages(ctx)
    users = [m["text"] for m in messages if m["role"] == "user"]
    reply = users[-1] if users else (messages[-1]["text"] if messages else "")
    reasoning = ""
    if ctx.config.version.reasoning_chunks:
        reasoning = reasoning_about(reply)
        await stream_reasoning(ctx, reasoning)
    model = ctx.data.get("model") or {}
    process_data = {"model_mode": model.get("mode", "chat"), "prompts": messages, "usage": USAGE,
                    "finish_reason": "stop", "model_provider": model.get("provider"), "model_name": model.get("name")}
    return NodeResult(inputs={}, process_data=process_data,
                      outputs={"text": reply, "reasoning_content": reasoning, "usage": USAGE, "finish_reason": "stop"})

"""What every consumer can read and every store can hold, checked once at the edge and again by the
message models (bots publish to the broker directly): JSON nested at most MAX_JSON_DEPTH deep, no
lone UTF-16 surrogates anywhere (they cannot be encoded as UTF-8), and no NUL characters in text
that lands in a text column (PostgreSQL refuses them; a JSON value may hold one, escaped)."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator

MAX_JSON_DEPTH = 64
# One bulk decision (API, console, CLI) names at most this many checkpoints.
BULK_DECISION_LIMIT = 500


class Unstorable(ValueError):
    """A value no consumer or store could take: the edge answers 400, a consumer dead-letters it."""


def has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_text(value: str) -> str:
    if "\x00" in value:
        raise Unstorable("contains a NUL character")
    if has_lone_surrogate(value):
        raise Unstorable("contains a lone UTF-16 surrogate (not valid Unicode text)")
    return value


def check_json(value: Any, depth: int = 0) -> Any:
    """The value itself when it is storable JSON; raises Unstorable naming the problem otherwise."""
    if depth > MAX_JSON_DEPTH:
        raise Unstorable(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        if has_lone_surrogate(value):
            raise Unstorable("contains a lone UTF-16 surrogate (not valid Unicode text)")
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and has_lone_surrogate(key):
                raise Unstorable("a key contains a lone UTF-16 surrogate")
            check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json(item, depth + 1)
    return value


def check_text_json(value: Any) -> Any:
    """`check_json`, and no NUL in any string of it, keys included: for JSON whose strings a consumer
    copies into text columns (the data of an event a workflow reports: a node's title, an error, a
    status), where the NUL a JSON column would keep is refused by PostgreSQL."""
    check_json(value)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            check_text(item)
        elif isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str):
                    check_text(key)
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)
    return value


def json_depth_ok(value: Any) -> bool:
    try:
        check_json(value)
    except Unstorable:
        return False
    return True


# Field types for the message models and request bodies.
Text = Annotated[str, AfterValidator(check_text)]
Json = Annotated[Any, AfterValidator(check_json)]
TextJson = Annotated[Any, AfterValidator(check_text_json)]

"""Human Input form inputs: what each type Dify knows accepts as a submitted value.

Dify 1.13/1.14 have `text_input` and `paragraph`; 1.15+ add `select` (one of the input's options),
`file` and `file-list` (files given as `{"transfer_method": "remote_url", "url": …}` or
`{"transfer_method": "local_file", "upload_file_id": …}` — an upload made with the same `user` as the
submit). DIFY.md "Newer Dify". Any other type is one we do not know: it is shown as captured, and a
decision is refused with `unsupported_input` rather than guessed.

The checks here run before anything is sent to Dify, on the form as captured (plain dicts); Dify
checks again and answers 400 `invalid_form_data` for what it still refuses.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

TEXT_TYPES = ("text_input", "paragraph")
FILE_TYPES = ("file", "file-list")
KNOWN_TYPES = TEXT_TYPES + ("select",) + FILE_TYPES
TRANSFER_METHODS = ("remote_url", "local_file")
FILE_KINDS = ("document", "image", "audio", "video", "custom")


def input_name(spec: dict[str, Any]) -> str | None:
    name = spec.get("output_variable_name")
    return name if isinstance(name, str) else None


def options_of(spec: dict[str, Any]) -> list[str]:
    """A select input's choices: `options`, or a constant `option_source` (read the same way)."""
    source = spec.get("option_source")
    if isinstance(source, dict) and isinstance(source.get("value"), list):
        return [str(o) for o in source["value"]]
    return [str(o) for o in spec.get("options") or []]


def is_known(spec: dict[str, Any]) -> bool:
    return spec.get("type") in KNOWN_TYPES


def is_empty(spec: dict[str, Any], value: Any) -> bool:
    """No value yet: absent, an empty text, an empty file list."""
    return value is None or value == "" or (spec.get("type") == "file-list" and value == [])


def normalize(spec: dict[str, Any], value: Any) -> tuple[Any, str | None]:
    """(the value to submit, None) or (None, why it cannot be submitted for this input)."""
    kind = spec.get("type")
    if kind in TEXT_TYPES:
        if isinstance(value, (bool, int, float)):
            return str(value).lower() if isinstance(value, bool) else str(value), None
        if not isinstance(value, str):
            return None, "takes text, not a JSON object or list"
        return value, None
    if kind == "select":
        options = options_of(spec)
        if not isinstance(value, str) or value not in options:
            return None, f"{value!r} is not one of its options {options}"
        return value, None
    if kind == "file":
        return _file(spec, value)
    if kind == "file-list":
        if not isinstance(value, list):
            return None, "takes a JSON list of files"
        limit = spec.get("max_length") or spec.get("number_limits")
        if isinstance(limit, int) and limit > 0 and len(value) > limit:
            return None, f"takes at most {limit} files"
        files = []
        for item in value:
            file, why = _file(spec, item)
            if why:
                return None, why
            files.append(file)
        return files, None
    return None, f"has type {kind!r}, which this version of dify-hitl does not know"


def _file(spec: dict[str, Any], value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, dict):
        return None, ('takes a file: {"transfer_method": "remote_url", "url": "https://…"} or '
                      '{"transfer_method": "local_file", "upload_file_id": "…"}')
    method = value.get("transfer_method")
    if method not in TRANSFER_METHODS:
        return None, f"a file's transfer_method must be one of {list(TRANSFER_METHODS)}"
    allowed = spec.get("allowed_file_upload_methods")
    if isinstance(allowed, list) and allowed and method not in allowed:
        return None, f"accepts files by {allowed} only, not {method}"
    if method == "remote_url":
        url = value.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            return None, "a remote_url file needs an http(s) url"
        file: dict[str, Any] = {"transfer_method": method, "url": url}
    else:
        upload = value.get("upload_file_id")
        if not isinstance(upload, str) or not upload:
            return None, "a local_file file needs the upload_file_id of a POST /v1/files/upload"
        file = {"transfer_method": method, "upload_file_id": upload}
    if value.get("type") is not None:
        if value["type"] not in FILE_KINDS:
            return None, f"a file's type must be one of {list(FILE_KINDS)}"
        file["type"] = value["type"]
    return file, None


def describe(spec: dict[str, Any]) -> str:
    """One line for a terminal: what the input takes."""
    kind = spec.get("type")
    if kind == "select":
        return f"select one of {options_of(spec)}"
    if kind in FILE_TYPES:
        types = spec.get("allowed_file_types")
        methods = spec.get("allowed_file_upload_methods")
        what = "files" if kind == "file-list" else "a file"
        return what + (f" ({', '.join(types)})" if types else "") + (f" by {', '.join(methods)}" if methods else "")
    if kind in TEXT_TYPES:
        return "text"
    return f"{kind} (unknown to dify-hitl: decide this form in Dify)"

"""What a Human Input form accepts per input type (1.14: text_input/paragraph; 1.15+: select, file, file-list).

- paragraph / text_input: any value, even "" (it stays optional; only a missing key is refused).
- select: required; the value must be one of the input's `options` (a list of strings; a
  `option_source: {type: "constant", value: [...]}` is read the same way).
- file: required; `{"transfer_method": "local_file", "upload_file_id": <id from /v1/files/upload,
  uploaded by the same user>}` or `{"transfer_method": "remote_url", "url": "http(s)://..."}`; an
  optional `type` (document, image, audio, video, custom). Optional input keys that narrow it:
  `allowed_file_types`, `allowed_file_extensions` (with "custom"), `allowed_file_upload_methods`.
- file-list: required, a non-empty list of those; `max_length` caps its length.
A bad value is a 400 `invalid_form_data` like every other form error; the texts are the simulator's
own (DIFY.md has none). The node outputs a file as a Dify file object; `__rendered_content` shows
`[file]` / `[N files]` in its place (Dify 1.15 docs).
"""
from __future__ import annotations

import mimetypes
import os
from typing import Any
from urllib.parse import urlsplit

from .errors import ApiError
from .uploads import UploadedFile

FILE_TYPES = ("document", "image", "audio", "video", "custom")
EXTENSION_TYPES = {
    "image": {"jpg", "jpeg", "png", "gif", "webp", "svg"},
    "audio": {"mp3", "m4a", "wav", "amr", "mpga"},
    "video": {"mp4", "mov", "mpeg", "webm"},
    "document": {"txt", "md", "markdown", "mdx", "pdf", "html", "htm", "xlsx", "xls", "vtt", "properties", "doc",
                 "docx", "csv", "eml", "msg", "pptx", "ppt", "xml", "epub"},
}
TRANSFER_METHODS = ("local_file", "remote_url")

class FormValueError(ValueError):
    pass


def is_missing(spec: dict, value: Any) -> bool:
    """A required input left empty: absent everywhere; for select/file also "", for file-list also []."""
    kind = spec.get("type")
    return value is None or (kind in ("select", "file") and value == "") or (kind == "file-list" and value == [])


def options_of(spec: dict) -> list:
    source = spec.get("option_source")
    if isinstance(source, dict) and isinstance(source.get("value"), list):
        return list(source["value"])
    return list(spec.get("options") or [])


def file_type_of(extension: str) -> str:
    return next((kind for kind, extensions in EXTENSION_TYPES.items() if extension in extensions), "custom")


def rendered_value(spec: dict, value: Any) -> str | None:
    """How a file input shows in `__rendered_content`; None: like any other value."""
    if spec.get("type") == "file":
        return "[file]"
    if spec.get("type") == "file-list":
        return f"[{len(value)} files]"
    return None


class FormValues:
    """Validates one submission's values against the form's inputs."""

    def __init__(self, uploads: dict[str, UploadedFile], app_id: str, user: str) -> None:
        self.uploads, self.app_id, self.user = uploads, app_id, user

    def accept(self, spec: dict, value: Any) -> Any:
        """The value the node outputs for `spec`; raises ApiError 400 invalid_form_data when it is not acceptable."""
        name = spec.get("output_variable_name")
        try:
            return self._accept(spec, value)
        except FormValueError as exc:
            raise ApiError(400, "invalid_form_data", f"Invalid value for input {name}: {exc}") from None

    def _accept(self, spec: dict, value: Any) -> Any:
        kind = spec.get("type")
        if kind == "select":
            options = options_of(spec)
            if value not in options:
                raise FormValueError(f"{value!r} is not one of {options}")
            return value
        if kind == "file":
            return self._file(spec, value)
        if kind == "file-list":
            if not isinstance(value, list):
                raise FormValueError("a file list must be a list of files")
            limit = spec.get("max_length") or spec.get("number_limits")
            if limit and len(value) > int(limit):
                raise FormValueError(f"at most {limit} files are allowed")
            return [self._file(spec, item) for item in value]
        return value

    def _file(self, spec: dict, mapping: Any) -> dict:
        if not isinstance(mapping, dict):
            raise FormValueError("a file must be an object with a transfer_method")
        method = mapping.get("transfer_method")
        if method not in TRANSFER_METHODS:
            raise FormValueError(f"transfer_method must be one of {list(TRANSFER_METHODS)}")
        allowed_methods = spec.get("allowed_file_upload_methods")
        if allowed_methods and method not in allowed_methods:
            raise FormValueError(f"transfer_method {method} is not allowed here")
        file = self._local(mapping) if method == "local_file" else self._remote(mapping)
        kind = mapping.get("type") if mapping.get("type") in FILE_TYPES else file_type_of(file["extension"][1:])
        allowed_types = spec.get("allowed_file_types") or []
        custom_ok = "custom" in allowed_types and file["extension"] in (spec.get("allowed_file_extensions") or [])
        if allowed_types and kind not in allowed_types and not custom_ok:
            raise FormValueError(f"file type {kind} is not allowed here")
        return {**file, "type": kind}

    def _local(self, mapping: dict) -> dict:
        upload_id = mapping.get("upload_file_id")
        upload = self.uploads.get(upload_id) if isinstance(upload_id, str) else None
        if upload is None or upload.app_id != self.app_id:
            raise FormValueError(f"upload file {upload_id} not found")
        if upload.session_id != self.user:
            raise FormValueError(f"upload file {upload_id} was uploaded by another user")
        return file_object("local_file", upload.name, f".{upload.extension}" if upload.extension else "",
                           upload.mime_type, upload.size, related_id=upload.id,
                           url=f"/files/{upload.id}/file-preview")

    @staticmethod
    def _remote(mapping: dict) -> dict:
        url = mapping.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise FormValueError("url must be an http(s) URL")
        filename = os.path.basename(parts.path) or parts.netloc
        extension = os.path.splitext(filename)[1].lower()
        mime_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return file_object("remote_url", filename, extension, mime_type, -1, remote_url=url, url=url)


def file_object(method: str, filename: str, extension: str, mime_type: str, size: int, *,
                related_id: str | None = None, remote_url: str | None = None, url: str | None = None) -> dict:
    """A file variable as Dify's nodes see it (its File model, serialized)."""
    return {"dify_model_identity": "__dify__file__", "id": None, "type": "custom", "transfer_method": method,
            "remote_url": remote_url, "related_id": related_id, "filename": filename, "extension": extension,
            "mime_type": mime_type, "size": size, "url": url}

"""POST /v1/files/upload: a local file, later referenced by a Human Input `file` input (1.15+ forms).

Multipart form with one `file` part and a `user` field (Dify's service API reads the end user from the
form; without one it files the upload under its "DEFAULT-USER"). Answers 201 with Dify's upload
shape `{id, name, size, extension, mime_type, created_by, created_at}`. Only the metadata is kept:
nothing in the simulator reads the bytes back. The error texts below are Dify's error classes as
read in its source; they were not recorded on a server.
"""
from __future__ import annotations

import email.policy
import os
import time
import uuid
from dataclasses import dataclass
from email.parser import BytesParser

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .errors import ApiError
from .service_api import authenticate, sim
from .uploads import UploadedFile

UPLOAD_FILE_SIZE_LIMIT = 15 * 1024 * 1024  # Dify's UPLOAD_FILE_SIZE_LIMIT default (MB)
DEFAULT_USER = "DEFAULT-USER"


@dataclass(frozen=True)
class FilePart:
    field: str
    filename: str | None
    content_type: str
    data: bytes


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], list[FilePart]]:
    """Form fields and file parts of a multipart/form-data body (the standard library's MIME parser)."""
    if not content_type.lower().startswith("multipart/form-data"):
        return {}, []
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    fields: dict[str, str] = {}
    files: list[FilePart] = []
    for part in message.iter_parts() if message.is_multipart() else []:
        name = part.get_param("name", header="content-disposition") or ""
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is None and part.get_content_type() == "text/plain" and name != "file":
            fields[str(name)] = payload.decode("utf-8", "replace")
        else:
            files.append(FilePart(str(name), filename, part.get_content_type(), payload))
    return fields, files


async def upload_file(request: Request) -> Response:
    state, app = sim(request), authenticate(request)
    fields, files = parse_multipart(request.headers.get("content-type", ""), await request.body())
    uploads = [f for f in files if f.field == "file"]
    if not uploads:
        raise ApiError(400, "no_file_uploaded", "Please upload your file.")
    if len(files) > 1:
        raise ApiError(400, "too_many_files", "Only one file is allowed.")
    part = uploads[0]
    if not part.filename:
        raise ApiError(400, "filename_not_exists_error", "The specified filename does not exist.")
    if len(part.data) > UPLOAD_FILE_SIZE_LIMIT:
        raise ApiError(413, "file_too_large", f"File size exceeded. {UPLOAD_FILE_SIZE_LIMIT // (1024 * 1024)} MB "
                                               "is the limit.")
    user = fields.get("user") or DEFAULT_USER
    end_user = state.store.end_user(app, user)
    uploaded = UploadedFile(str(uuid.uuid4()), app.id, user, end_user.id, part.filename, len(part.data),
                            os.path.splitext(part.filename)[1].lstrip(".").lower(), part.content_type,
                            int(time.time()))
    state.uploads[uploaded.id] = uploaded
    return JSONResponse(uploaded.answer(), status_code=201)

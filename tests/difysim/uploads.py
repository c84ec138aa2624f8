"""A file uploaded through POST /v1/files/upload (files_api.py): its metadata, owned by an app and a user."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UploadedFile:
    id: str
    app_id: str
    session_id: str  # the `user` that uploaded it: a form accepts only the submitter's own uploads
    end_user_id: str
    name: str
    size: int
    extension: str  # without the dot, lower case
    mime_type: str
    created_at: int

    def answer(self) -> dict:
        return {"id": self.id, "name": self.name, "size": self.size, "extension": self.extension,
                "mime_type": self.mime_type, "created_by": self.end_user_id, "created_at": self.created_at}

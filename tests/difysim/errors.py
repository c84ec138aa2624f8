"""Dify's error answers: JSON `{code, message, status}`, plus the few odd shapes it really sends."""
from __future__ import annotations

import re

from pydantic import ValidationError
from starlette.responses import HTMLResponse, JSONResponse

WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="api"'}

NOT_FOUND_HTML = (
    "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    "<p>The requested URL was not found on the server. If you entered the URL manually please check "
    "your spelling and try again.</p>\n"
)
METHOD_NOT_ALLOWED_HTML = (
    "<!doctype html>\n<html lang=en>\n<title>405 Method Not Allowed</title>\n<h1>Method Not Allowed</h1>\n"
    "<p>The method is not allowed for the requested URL.</p>\n"
)


class ApiError(Exception):
    """Raised by handlers; rendered as Dify's `{code, message, status}` JSON."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse({"code": self.code, "message": self.message, "status": self.status},
                            status_code=self.status, headers=self.headers)


def invalid_param(message: str) -> ApiError:
    return ApiError(400, "invalid_param", message)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, WWW_AUTHENTICATE)


def run_not_found(trailing_dot: bool = True) -> ApiError:
    # GET run says "Workflow run not found." while the events endpoint drops the dot (fixture 12).
    return ApiError(404, "not_found", "Workflow run not found." if trailing_dot else "Workflow run not found")


def internal_server_error() -> JSONResponse:
    # Flask's generic 500 handler: note the key order differs from the other errors (fixture 12).
    return JSONResponse({"message": "Internal Server Error", "code": "unknown", "status": 500}, status_code=500)


def not_found_html() -> HTMLResponse:
    return HTMLResponse(NOT_FOUND_HTML, status_code=404)


def method_not_allowed_html() -> HTMLResponse:
    return HTMLResponse(METHOD_NOT_ALLOWED_HTML, status_code=405)


def pydantic_message(exc: ValidationError) -> str:
    """str(ValidationError), with the docs URL pinned to the pydantic version real Dify ships (2.12)."""
    return re.sub(r"errors\.pydantic\.dev/[0-9.]+/", "errors.pydantic.dev/2.12/", str(exc))

"""Errors in the OpenAI shape: `{"error": {"message", "type", "param", "code"}}` with its HTTP status.
Every failure a client can cause ends as one of these, never as a traceback."""

from __future__ import annotations


class ApiError(Exception):
    """A request the server refuses (or could not answer), as the OpenAI API reports it."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def from_validation(exc) -> ApiError:
    """A pydantic ValidationError as a 400 naming the first field that is wrong."""
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    if first["type"] == "extra_forbidden":
        return bad_request(f"unknown field {param!r}", param=param, code="unknown_field")
    if first["type"] == "missing":
        return bad_request(f"{param!r} is required", param=param, code="missing_field")
    return bad_request(f"{param}: {first['msg']}", param=param, code="invalid_value")

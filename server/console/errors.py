"""The one error type the CLI reports: a status code name and a sentence, then exit 1."""

from __future__ import annotations


class CliError(Exception):
    """Something the technician must read; `code` is a gRPC status name (NOT_FOUND, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}

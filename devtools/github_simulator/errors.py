"""The error answers the simulator gives, shaped like GitHub's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

DOCS = "https://docs.github.com/rest"


class ApiError(Exception):
    """Raised anywhere in the simulator; answered as GitHub's JSON error body with `status`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = list(errors) if errors else None
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "documentation_url": DOCS, "status": str(self.status)}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def bad_credentials() -> ApiError:
    return ApiError(401, "Bad credentials")


def validation_failed(resource: str, message: str, *, code: str = "custom", field: str | None = None) -> ApiError:
    error: dict[str, Any] = {"resource": resource, "code": code, "message": message}
    if field:
        error["field"] = field
    return ApiError(422, "Validation Failed", errors=[error])

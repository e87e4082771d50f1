"""API errors: raised where a problem is found, answered in one JSON shape by one handler."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from penguins.serving.schemas import ErrorBody, ErrorDetail


@dataclass
class ApiError(Exception):
    """An error answer: HTTP status, a one-line message, the fields at fault, extra headers."""

    status: int
    error: str
    details: list[ErrorDetail] = field(default_factory=list)
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Give the exception its message, so logs and tracebacks show it."""
        super().__init__(f"{self.status}: {self.error}")

    @classmethod
    def at_field(cls, status: int, error: str, name: str, message: str) -> ApiError:
        """Return an error about one field of the request body."""
        return cls(status, error, [ErrorDetail(field=name, message=message)])

    def body(self) -> ErrorBody:
        """Return the JSON body: ``{"error": ..., "details": [...]}``, details only if any."""
        return ErrorBody(error=self.error, details=self.details or None)

    def to_json(self) -> str:
        """Return the body as JSON text, leaving ``details`` out when there are none."""
        return self.body().model_dump_json(exclude_none=True)

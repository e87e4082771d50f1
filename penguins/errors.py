"""API errors: raised where a problem is found, turned into one JSON shape by one handler."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldError:
    """One field at fault: its path in the request body and what is wrong with it."""

    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """Return the JSON form."""
        return {"field": self.field, "message": self.message}


@dataclass
class ApiError(Exception):
    """An error answer: HTTP status, a one-line message, and the fields at fault if any."""

    status: int
    error: str
    details: list[FieldError] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Give the exception its message, so logs and tracebacks show it."""
        super().__init__(f"{self.status}: {self.error}")

    def to_dict(self) -> dict:
        """Return the JSON body: ``{"error": ..., "details": [...]}``, details only if any."""
        body: dict = {"error": self.error}
        if self.details:
            body["details"] = [d.to_dict() for d in self.details]
        return body

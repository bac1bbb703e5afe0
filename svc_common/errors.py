"""Typed errors raised by services and mapped to HTTP by the gateway.

Arguments stay JSON-safe (str, list of dicts) because nameko serializes
`exc.args` into the RPC reply; the gateway maps on the class name.
"""
from nameko.exceptions import deserialize_to_instance


class ServiceError(Exception):
    http_status = 500
    title = "Internal error"

    def __init__(self, message: str, errors: list[dict] | None = None):
        super().__init__(message, errors or [])
        self.message = message
        self.errors = errors or []

    def __str__(self) -> str:
        return self.message


@deserialize_to_instance
class NotFound(ServiceError):
    http_status = 404
    title = "Not found"


@deserialize_to_instance
class Conflict(ServiceError):
    """The request is valid but the current state forbids it (409)."""
    http_status = 409
    title = "Conflict"


@deserialize_to_instance
class ValidationFailed(ServiceError):
    """Bad input; `errors` is a list of {field, message} (422)."""
    http_status = 422
    title = "Validation failed"


@deserialize_to_instance
class Forbidden(ServiceError):
    http_status = 403
    title = "Forbidden"


EXPECTED_ERRORS = (NotFound, Conflict, ValidationFailed, Forbidden)


def field_error(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", [{"field": field, "message": message}])


def from_pydantic(exc) -> ValidationFailed:
    """pydantic.ValidationError → ValidationFailed naming each field."""
    errors = [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]}
        for err in exc.errors()
    ]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return ValidationFailed(summary, errors)

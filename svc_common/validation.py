"""RPC payloads in and out: pydantic in, JSON-safe dicts out."""
import uuid
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import field_error, from_pydantic

T = TypeVar("T", bound=BaseModel)


class Schema(BaseModel):
    """Base of RPC input schemas: unknown fields are an error, strings trimmed."""
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OutSchema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def parse(model: type[T], data: Any) -> T:
    """Validate an RPC argument; a bad one becomes ValidationFailed naming the fields."""
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise from_pydantic(exc) from None


def dump(model: type[BaseModel], obj: Any) -> dict:
    return model.model_validate(obj).model_dump(mode="json")


def page(items: list[dict], total: int, offset: int, limit: int) -> dict:
    return {"items": items, "total": total, "offset": offset, "limit": limit}


def parse_id(value: Any, field: str) -> uuid.UUID:
    """An id argument; a malformed one is a 422 naming `field` (not a 500)."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError):
        raise field_error(field, "must be a UUID") from None


def window(offset: Any, limit: Any, maximum: int = 200) -> tuple[int, int]:
    """Pagination arguments of a list RPC; bad ones are a 422 naming the field, never a 500."""
    values = {}
    for field, value in (("offset", offset), ("limit", limit)):
        try:
            values[field] = int(value)
        except (TypeError, ValueError):
            raise field_error(field, "must be an integer") from None
    if values["offset"] < 0:
        raise field_error("offset", "must not be negative")
    if values["limit"] < 1:
        raise field_error("limit", "must be at least 1")
    return values["offset"], min(values["limit"], maximum)

"""Frames <-> messages: msgpack encoding, the protocol version, bad input.

A frame is ``msgpack([PROTOCOL_VERSION, TYPE, *fields])``. ``decode`` turns a
frame into a message or raises ``WireError`` saying what is wrong (and, when it
could be read, the request id so the receiver can answer with an error). It
checks the protocol version, the type code, the field count and each field's
type; the contents of lists are checked by the handlers that use them.
"""

from __future__ import annotations

import dataclasses
import types
import typing

import msgpack

from zkv.core import messages
from zkv.core.messages import PROTOCOL_VERSION

FRAME_BYTES_MAX = 64 << 20  # a batch of values up to this; bigger frames are refused


class WireError(Exception):
    """A frame that is not a valid message. ``request_id`` is set when it was readable."""

    def __init__(self, reason: str, request_id: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request_id = request_id


def _checker(annotation: object) -> tuple[type, ...]:
    if isinstance(annotation, types.UnionType):
        allowed: list[type] = []
        for member in typing.get_args(annotation):
            allowed.extend(_checker(member))
        return tuple(allowed)
    if annotation is type(None):
        return (type(None),)
    if annotation is bool:
        return (bool,)
    if annotation is int:
        return (int,)
    if annotation in (str, bytes, list, dict):
        return (annotation,)
    raise TypeError(f"unsupported field annotation {annotation!r}")


def _build_specs() -> dict[int, tuple[type, tuple[tuple[str, tuple[type, ...]], ...]]]:
    specs = {}
    for cls in messages.ALL_MESSAGES:
        hints = typing.get_type_hints(cls)
        fields = tuple((field.name, _checker(hints[field.name])) for field in dataclasses.fields(cls))
        if cls.TYPE in specs:
            raise TypeError(f"duplicate message type {cls.TYPE}")
        specs[cls.TYPE] = (cls, fields)
    return specs


_SPECS = _build_specs()
_packer_options = {"use_bin_type": True}


def encode(message: object) -> bytes:
    """One frame for one message."""
    cls = type(message)
    values = [PROTOCOL_VERSION, cls.TYPE]
    values.extend(getattr(message, name) for name, _ in _SPECS[cls.TYPE][1])
    return msgpack.packb(values, use_bin_type=True)


def encode_fields(message_type: type, *fields: object) -> bytes:
    """Encode without building the dataclass (hot paths that already hold the fields)."""
    return msgpack.packb([PROTOCOL_VERSION, message_type.TYPE, *fields], use_bin_type=True)


def decode(frame: bytes) -> object:
    if len(frame) > FRAME_BYTES_MAX:
        raise WireError(f"frame of {len(frame)} bytes exceeds {FRAME_BYTES_MAX}")
    try:
        values = msgpack.unpackb(frame, raw=False, use_list=True, strict_map_key=False)
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as error:
        # TypeError: a map keyed by an unhashable value; RecursionError: absurd nesting
        raise WireError(f"not msgpack: {error}") from None
    if not isinstance(values, list) or len(values) < 2:
        raise WireError("frame is not a [version, type, ...] array")
    version, type_code = values[0], values[1]
    request_id = values[2] if len(values) > 2 and type(values[2]) is int else None
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise WireError(f"protocol version {version!r} is not supported (this node speaks {PROTOCOL_VERSION})", request_id)
    spec = _SPECS.get(type_code) if type(type_code) is int else None
    if spec is None:
        raise WireError(f"unknown message type {type_code!r}", request_id)
    cls, fields = spec
    if len(values) != len(fields) + 2:
        raise WireError(f"{cls.__name__} needs {len(fields)} fields, got {len(values) - 2}", request_id)
    for (name, allowed), value in zip(fields, values[2:]):
        if not isinstance(value, allowed) or (type(value) is bool and bool not in allowed):
            raise WireError(f"{cls.__name__}.{name} has type {type(value).__name__}", request_id)
    return cls(*values[2:])

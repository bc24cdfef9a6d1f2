"""The wire: every message type round-trips; bad frames become WireError, never anything else."""

from __future__ import annotations

import dataclasses
import typing

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkv import wire
from zkv.core import messages
from zkv.core.messages import ALL_MESSAGES, PROTOCOL_VERSION
from zkv.wire import FRAME_BYTES_MAX, WireError, decode, encode, encode_fields

RECORD = bytes(16) + b"\x01value"
MEMBER = ["n1", "127.0.0.1:7000", "127.0.0.1:8000", 1700000000000, "alive", 12, 3, 99]
CONFIG = [3, 4, 3, ["n1"], [99], [["n1", "127.0.0.1:7000", ""]], [[["n1"], ["n1"], 0, [], [], 1]] * 4]

SAMPLES = [
    messages.Batch(1, 3, bytes([messages.OP_WRITE, messages.OP_READ]), [0, 1], [b"k1", b"k2"], [RECORD, None]),
    messages.BatchReply(1, 3, bytes([messages.STATUS_OK, messages.STATUS_STALE]), [None]),
    messages.Coordinate(2, messages.COORD_SET, b"key", "value \u2603", 2, 5000),
    messages.Coordinate(3, messages.COORD_GET, b"key", None, 0, 0),
    messages.CoordinateReply(2, messages.RESULT_OK, b"\x00bytes", "", 2),
    messages.Inspect(4, "stats"),
    messages.InspectReply(4, {"node_id": "n1", "nested": {"a": [1, 2]}, "ratio": 0.5}),
    messages.Scan(14, 3, 5, None, 100),
    messages.Scan(15, 3, 5, b"cursor", 100),
    messages.ScanReply(14, 3, messages.STATUS_OK, [b"k"], [b"\x00" * 16 + b"\x01v"], b"k"),
    messages.ScanReply(15, 3, messages.STATUS_NOT_READY, [], [], None),
    messages.Error(5, "bad_frame", "frame is not a [version, type, ...] array"),
    messages.Gossip("n1", 3, [MEMBER]),
    messages.Join(6, "n2", "127.0.0.1:7001", "127.0.0.1:8001", 64, 3),
    messages.JoinReply(6, True, "", CONFIG, [MEMBER]),
    messages.JoinReply(7, False, "cluster has 64 partitions", None, []),
    messages.ConfigRequest(8, 3),
    messages.ConfigReply(8, CONFIG, [MEMBER]),
    messages.ConfigReply(9, None, []),
    messages.Prepare("n1", 4, [2, "n1"]),
    messages.Promise("n2", 4, [2, "n1"], True, [1, "n3"], CONFIG, 3),
    messages.Promise("n2", 4, [2, "n1"], False, None, None, 3),
    messages.Accept("n1", 4, [2, "n1"], CONFIG),
    messages.Accepted("n2", 4, [2, "n1"], True, 3),
    messages.Commit("n1", CONFIG),
    messages.HandoffDone("n2", [0, 5], [3, 3]),
    messages.PullRequest(10, "n2", 5, 3, None, 2000, 1 << 20),
    messages.PullRequest(11, "n2", 5, 3, b"cursor", 2000, 1 << 20),
    messages.PullReply(10, 5, messages.STATUS_OK, [b"k"], [RECORD], b"k"),
    messages.PullReply(11, 5, messages.STATUS_OK, [], [], None),
    messages.AeDigest(12, "n1", 3, 5, bytes(8 * 32)),
    messages.AeKeys(12, 5, messages.STATUS_OK, [1, 7], [b"k"], [bytes(16)], True),
    messages.AeRecords(13, "n1", 3, 5, [b"k"], [RECORD], [b"w"]),
    messages.TombstoneQuery(14, "n1", 3, 5, [b"k"], [bytes(16)]),
    messages.TombstoneQueryReply(14, 5, messages.STATUS_OK, b"\x01"),
    messages.TombstonePurge("n1", 3, 5, [b"k"], [bytes(16) + b"\x00"]),
]


def frame_of(*values) -> bytes:
    return msgpack.packb(list(values), use_bin_type=True)


def fields_of(message) -> list:
    return [getattr(message, field.name) for field in dataclasses.fields(message)]


# -- round trips ------------------------------------------------------------------------------------

def test_every_message_type_has_a_sample():
    assert {type(sample) for sample in SAMPLES} == set(ALL_MESSAGES)


def test_type_codes_are_unique():
    codes = [cls.TYPE for cls in ALL_MESSAGES]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message):
    frame = encode(message)
    assert type(frame) is bytes
    decoded = decode(frame)
    assert type(decoded) is type(message)
    assert decoded == message
    assert msgpack.unpackb(frame, raw=False)[:2] == [PROTOCOL_VERSION, type(message).TYPE]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_encode_fields_matches_encode(message):
    assert encode_fields(type(message), *fields_of(message)) == encode(message)


def test_str_and_bytes_values_keep_their_type():
    for value in ("text", b"bytes"):
        decoded = decode(encode(messages.CoordinateReply(1, "ok", value, "", 2)))
        assert decoded.value == value and type(decoded.value) is type(value)


# -- rejections --------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("frame", "reason_fragment"),
    [
        (b"", "not msgpack"),
        (b"\xc1", "not msgpack"),  # a reserved, never-used msgpack byte
        (b"\x92\x01", "not msgpack"),  # truncated array
        (b"\x91\x01\x01", "not msgpack"),  # extra data after the message
        (b"GET / HTTP/1.1\r\n\r\n", "not msgpack"),
        (msgpack.packb(7), "not a [version, type, ...] array"),
        (msgpack.packb({"version": 1}), "not a [version, type, ...] array"),
        (frame_of(1), "not a [version, type, ...] array"),
        (frame_of(), "not a [version, type, ...] array"),
        (frame_of(1, 99, 1), "unknown message type 99"),
        (frame_of(1, "Batch", 1), "unknown message type 'Batch'"),
        (frame_of(1, True, 1), "unknown message type True"),
        (frame_of(1, None), "unknown message type None"),
    ],
)
def test_malformed_frames(frame, reason_fragment):
    with pytest.raises(WireError) as caught:
        decode(frame)
    assert reason_fragment in caught.value.reason
    assert str(caught.value) == caught.value.reason


@pytest.mark.parametrize("version", [0, 2, 255, -1, "1", None])
def test_another_protocol_version_is_refused_with_the_request_id(version):
    frame = frame_of(version, messages.Inspect.TYPE, 42, "stats")
    with pytest.raises(WireError) as caught:
        decode(frame)
    assert f"protocol version {version!r} is not supported" in caught.value.reason
    assert f"speaks {PROTOCOL_VERSION}" in caught.value.reason
    assert caught.value.request_id == 42


def test_no_request_id_is_invented_when_the_first_field_is_not_one():
    with pytest.raises(WireError) as caught:
        decode(frame_of(2, messages.Gossip.TYPE, "n1", 3, []))
    assert caught.value.request_id is None
    with pytest.raises(WireError) as caught:
        decode(frame_of(2, messages.Inspect.TYPE, True, "stats"))  # a bool is not a request id
    assert caught.value.request_id is None


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_wrong_field_count(message):
    fields = fields_of(message)
    name = type(message).__name__
    for values in (fields[:-1], fields + [0]):
        with pytest.raises(WireError) as caught:
            decode(frame_of(PROTOCOL_VERSION, type(message).TYPE, *values))
        assert caught.value.reason == f"{name} needs {len(fields)} fields, got {len(values)}"


def _wrong_value_for(allowed: tuple[type, ...]):
    """A value of a type the field does not allow (bool where int is expected, first)."""
    if int in allowed and bool not in allowed:
        return True
    for candidate in (3.5, "text", b"raw", [1], {"k": 1}, None, 7, False):
        if type(candidate) not in allowed:
            return candidate
    raise AssertionError(f"every candidate is allowed by {allowed}")


def _field_cases():
    for sample in SAMPLES:
        cls = type(sample)
        hints = typing.get_type_hints(cls)
        for index, field in enumerate(dataclasses.fields(cls)):
            allowed = wire._checker(hints[field.name])
            yield pytest.param(sample, index, field.name, _wrong_value_for(allowed),
                               id=f"{cls.__name__}.{field.name}")


@pytest.mark.parametrize(("sample", "index", "name", "wrong"), list(_field_cases()))
def test_wrong_field_type(sample, index, name, wrong):
    values = fields_of(sample)
    values[index] = wrong
    with pytest.raises(WireError) as caught:
        decode(frame_of(PROTOCOL_VERSION, type(sample).TYPE, *values))
    assert caught.value.reason == f"{type(sample).__name__}.{name} has type {type(wrong).__name__}"
    # the request id is recovered whenever the first field is an int (most messages' request_id)
    assert caught.value.request_id == (values[0] if type(values[0]) is int else None)


@pytest.mark.parametrize(
    ("cls", "values", "reason"),
    [
        (messages.Batch, [True, 3, b"w", [0], [b"k"], [RECORD]], "Batch.request_id has type bool"),
        (messages.Batch, [1, False, b"w", [0], [b"k"], [RECORD]], "Batch.epoch has type bool"),
        (messages.Batch, [1, 3, "w", [0], [b"k"], [RECORD]], "Batch.ops has type str"),
        (messages.Batch, [1, 3, b"w", (0,), [b"k"], [RECORD]], None),  # msgpack turns a tuple into a list
        (messages.JoinReply, [1, 1, "", None, []], "JoinReply.ok has type int"),
        (messages.Coordinate, [1, "set", "key", "v", 0, 0], "Coordinate.key has type str"),
        (messages.Coordinate, [1, "set", b"key", 5, 0, 0], "Coordinate.value has type int"),
        (messages.InspectReply, [1, [1, 2]], "InspectReply.data has type list"),
        (messages.Gossip, ["n1", 3.0, []], "Gossip.epoch has type float"),
    ],
)
def test_field_type_table(cls, values, reason):
    frame = frame_of(PROTOCOL_VERSION, cls.TYPE, *values)
    if reason is None:
        assert type(decode(frame)) is cls
        return
    with pytest.raises(WireError) as caught:
        decode(frame)
    assert caught.value.reason == reason


def test_an_oversized_frame_is_refused_before_parsing():
    frame = b"\x00" * (FRAME_BYTES_MAX + 1)
    with pytest.raises(WireError) as caught:
        decode(frame)
    assert caught.value.reason == f"frame of {FRAME_BYTES_MAX + 1} bytes exceeds {FRAME_BYTES_MAX}"


def test_a_frame_at_the_limit_is_parsed():
    padding = FRAME_BYTES_MAX - len(frame_of(PROTOCOL_VERSION, messages.Error.TYPE, 1, "c", ""))
    # msgpack str headers grow with the length: shrink the padding until the frame fits exactly
    message = None
    for slack in range(0, 16):
        frame = frame_of(PROTOCOL_VERSION, messages.Error.TYPE, 1, "c", "x" * (padding - slack))
        if len(frame) <= FRAME_BYTES_MAX:
            message = decode(frame)
            break
    assert isinstance(message, messages.Error)


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b"\x81\x91\x01\x01", id="map-with-array-key"),
        pytest.param(b"\x81\x80\x01", id="map-with-map-key"),
        # InspectReply(1, data={[1]: 1}): a well-formed header around the bad map
        pytest.param(b"\x94\x01\x06\x01\x81\x91\x01\x01", id="inside-a-message"),
    ],
)
def test_unhashable_map_keys_are_a_wire_error(frame):
    with pytest.raises(WireError):
        decode(frame)


# -- fuzzing --------------------------------------------------------------------------------------------

def _decode_or_wire_error(frame: bytes) -> None:
    try:
        message = decode(frame)
    except WireError as error:
        assert isinstance(error.reason, str) and error.reason
        assert error.request_id is None or type(error.request_id) is int
        return
    assert type(message) in ALL_MESSAGES


def _hashable_safe(frame: bytes) -> bool:
    """Frames msgpack can turn into Python at all (and those it cannot, which are WireErrors too)."""
    try:
        msgpack.unpackb(frame, raw=False, use_list=True, strict_map_key=False)
    except TypeError:
        return False
    except Exception:  # noqa: BLE001 - any other failure is decode()'s business to turn into WireError
        return True
    return True


@settings(derandomize=True, deadline=None, max_examples=1000)
@given(st.binary(max_size=200))
def test_decode_of_arbitrary_bytes_only_raises_wire_error(frame):
    if _hashable_safe(frame):
        _decode_or_wire_error(frame)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False) | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.text(max_size=5) | st.integers(min_value=-(2**63), max_value=2**63 - 1), children,
                      max_size=4),
    max_leaves=20,
)


@settings(derandomize=True, deadline=None, max_examples=1000)
@given(msgpack_values)
def test_decode_of_arbitrary_structures_only_raises_wire_error(value):
    _decode_or_wire_error(msgpack.packb(value, use_bin_type=True))


@settings(derandomize=True, deadline=None, max_examples=1000)
@given(st.sampled_from(SAMPLES), st.data())
def test_decode_of_mutated_messages_only_raises_wire_error(sample, data):
    # Near-misses reach deeper than random structures: right version and type, one field replaced.
    values = [PROTOCOL_VERSION, type(sample).TYPE, *fields_of(sample)]
    index = data.draw(st.integers(min_value=0, max_value=len(values) - 1))
    values[index] = data.draw(msgpack_values)
    _decode_or_wire_error(msgpack.packb(values, use_bin_type=True))


@settings(derandomize=True, deadline=None, max_examples=500)
@given(st.sampled_from(SAMPLES), st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_decode_of_corrupted_frames_only_raises_wire_error(sample, position, byte):
    frame = bytearray(encode(sample))
    frame[position % len(frame)] = byte
    if _hashable_safe(bytes(frame)):
        _decode_or_wire_error(bytes(frame))

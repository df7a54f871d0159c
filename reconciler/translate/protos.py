"""Small protobuf values and wire-format pieces more than one module builds. Pure."""

from __future__ import annotations

from google.protobuf import duration_pb2

__all__ = ["duration", "read_varint", "varint"]

_NANOS_PER_SECOND = 10**9


def duration(nanos: int) -> duration_pb2.Duration:
    """A protobuf Duration of ``nanos`` nanoseconds (non-negative)."""
    return duration_pb2.Duration(seconds=nanos // _NANOS_PER_SECOND, nanos=nanos % _NANOS_PER_SECOND)


def varint(value: int) -> bytes:
    """``value`` as a protobuf base-128 varint (tags and length prefixes in the wire format)."""
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]  # most lengths and every tag (a translation writes ~165,000)
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_ONE_BYTE = tuple(bytes((value,)) for value in range(0x80))


def read_varint(data: bytes, position: int) -> tuple[int, int]:
    """The varint starting at ``position`` in ``data``, and the position after it."""
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7

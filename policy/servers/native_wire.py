"""A fast path for the native ``CheckRequest``: its attributes read straight off the wire.

:func:`policy.servers.native_codec.attributes_from_proto` walks protobuf's map of
``Value`` messages, which costs a Python wrapper object and a ``WhichOneof`` per
attribute. Most of a sidecar's requests repeat the same attribute entries (the same
peers, namespaces, hosts, methods ...), so :class:`WireDecoder` reads the serialized
request itself and remembers each map entry's bytes with its decoded ``(name, value)``:
a repeated entry costs one dict lookup.

It is a fast path only, never a second opinion: it accepts a request only in the
layout protobuf's serializers write (the ``attributes`` field and nothing else; each
map entry exactly a key field then a value field; each ``Value`` exactly one member
set; a ``StringMap`` entry key then value; a ``Timestamp`` or ``Duration`` body is
read by protobuf's own parser) and only when every
attribute decodes and agrees with the vocabulary. Anything else — quotas, a
deduplication id, unknown or repeated fields, an empty ``Value``, a type mismatch, an
address of the wrong length, invalid UTF-8, a time outside Python's range —
answers None, and the caller decodes the request with protobuf as before, which
gives the same values, or the same ``INVALID_ARGUMENT``, as without this module.
So for every request it accepts, the attributes equal what
``attributes_from_proto(CheckRequest.FromString(data).attributes, vocabulary)`` returns.
"""

from __future__ import annotations

import datetime as _dt
import struct
from collections.abc import Mapping
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import DecodeError

from policy.attributes.types import ValueType
from policy.servers.native_codec import ip_from_raw
from policy.servers.paths import PATH_ATTRIBUTES, normalize_path

__all__ = ["MAX_ENTRY_BYTES", "MAX_RUN_BYTES", "WireDecoder"]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_timedelta = _dt.timedelta
_unpack_double = struct.Struct("<d").unpack_from
_ANY = ValueType.ANY
_STRING_TYPE = ValueType.STRING
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_parse_timestamp = timestamp_pb2.Timestamp.FromString
_parse_duration = duration_pb2.Duration.FromString

#: The largest map entry (bytes) the entry memo keeps, and the largest run of entries the run
#: memo keeps: they bound its memory (about 10 MB at most) whatever clients send.
MAX_ENTRY_BYTES = 1024
MAX_RUN_BYTES = 4096

# The tag byte of each ``policy.v1.Value`` member (field number << 3 | wire type) and its type.
_STRING, _INT64, _DOUBLE, _BOOL, _BYTES = 0x0A, 0x10, 0x19, 0x20, 0x2A
_TIMESTAMP, _DURATION, _IP, _STRING_MAP = 0x32, 0x3A, 0x42, 0x4A
_TYPE_OF_TAG = {
    _STRING: ValueType.STRING, _INT64: ValueType.INT64, _DOUBLE: ValueType.DOUBLE,
    _BOOL: ValueType.BOOL, _BYTES: ValueType.BYTES, _TIMESTAMP: ValueType.TIMESTAMP,
    _DURATION: ValueType.DURATION, _IP: ValueType.IP_ADDRESS, _STRING_MAP: ValueType.STRING_MAP,
}


class _Refused(Exception):
    """The bytes are not in the layout this fast path reads: protobuf decides instead."""


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """An unsigned varint at ``pos`` (at most 64 bits) and the position after it."""
    result = shift = 0
    while pos < end and shift < 64:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result >> 64:
                raise _Refused
            return result, pos
        shift += 7
    raise _Refused


def _length(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A length prefix at ``pos``: the (start, end) of the bytes it delimits, inside ``end``."""
    size = data[pos] if pos < end else 0x80
    if size < 0x80:
        pos += 1
    else:
        size, pos = _varint(data, pos, end)
    stop = pos + size
    if stop > end:
        raise _Refused
    return pos, stop


def _signed(value: int, low: int, high: int) -> int:
    """A varint read as two's complement int64, refused unless within [low, high]."""
    if value > _INT64_MAX:
        value -= 1 << 64
    if not low <= value <= high:
        raise _Refused
    return value


def _text(data: bytes, start: int, stop: int) -> str:
    try:
        return data[start:stop].decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused from None


def _string_map(data: bytes, pos: int, end: int) -> dict[str, str]:
    """A ``StringMap`` body: entries, each exactly a key field then a value field."""
    out: dict[str, str] = {}
    while pos < end:
        if data[pos] != 0x0A:
            raise _Refused
        pos, stop = _length(data, pos + 1, end)
        if pos >= stop or data[pos] != 0x0A:
            raise _Refused
        key_start, key_stop = _length(data, pos + 1, stop)
        if key_stop >= stop or data[key_stop] != 0x12:
            raise _Refused
        value_start, value_stop = _length(data, key_stop + 1, stop)
        if value_stop != stop:
            raise _Refused
        out[_text(data, key_start, key_stop)] = _text(data, value_start, value_stop)
        pos = stop
    return out


def _value(data: bytes, pos: int, end: int) -> Any:
    """A ``Value`` body holding exactly one member, as :func:`attributes_from_proto` converts it."""
    if pos >= end:
        raise _Refused  # an empty Value: an error protobuf's path names
    tag = data[pos]
    pos += 1
    if tag == _INT64 or tag == _BOOL:
        raw, pos = _varint(data, pos, end)
        if pos != end:
            raise _Refused
        if tag == _BOOL:
            if raw > 1:
                raise _Refused
            return raw == 1
        return _signed(raw, _INT64_MIN, _INT64_MAX)
    if tag == _DOUBLE:
        if pos + 8 != end:
            raise _Refused
        return _unpack_double(data, pos)[0]
    start, stop = _length(data, pos, end)
    if stop != end:
        raise _Refused
    if tag == _STRING:
        return _text(data, start, stop)
    if tag == _BYTES:
        return data[start:stop]
    if tag == _IP:
        ip = ip_from_raw(data[start:stop])
        if ip is None:
            raise _Refused
        return ip
    if tag == _STRING_MAP:
        return _string_map(data, start, stop)
    if tag == _TIMESTAMP or tag == _DURATION:
        # protobuf's own parser for the body: the same reading of it as the protobuf path's, faster.
        try:
            parsed = (_parse_timestamp if tag == _TIMESTAMP else _parse_duration)(data[start:stop])
        except (DecodeError, ValueError, RuntimeError):
            raise _Refused from None
        seconds, nanos = parsed.seconds, parsed.nanos
        try:
            if tag == _TIMESTAMP:
                return _EPOCH + _timedelta(0, seconds, nanos // 1000)
            # Seconds and nanos share a sign; truncate the nanos toward zero.
            micros = nanos // 1000 if nanos >= 0 else -(-nanos // 1000)
            return _timedelta(0, seconds, micros)
        except OverflowError:
            raise _Refused from None
    raise _Refused


def _entry(data: bytes, vocabulary: Mapping[str, ValueType]) -> tuple[str, Any]:
    """One ``Attributes.values`` map entry: exactly a key field then a value field."""
    end = len(data)
    key_stop = data[1] + 2 if end > 4 and data[1] < 0x80 else end
    if key_stop + 4 <= end < key_stop + 0x80 and data[0] == 0x0A and data[key_stop] == 0x12 \
            and data[key_stop + 2] == _STRING and data[key_stop + 1] == end - key_stop - 2 \
            and data[key_stop + 3] == end - key_stop - 4:
        # The common case, a string of fewer than 124 bytes under a name of fewer than 128:
        # each length one byte (below 0x80), so the layout is fixed.
        try:
            name = data[2:key_stop].decode("utf-8")
            value = data[key_stop + 4:end].decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused from None
        expected = vocabulary.get(name)
        if expected is not None and expected is not _STRING_TYPE and expected is not _ANY:
            raise _Refused  # a type mismatch: protobuf's path words the error
        return name, value
    if end < 2 or data[0] != 0x0A:
        raise _Refused
    if key_stop + 2 < end and data[key_stop] == 0x12 and data[key_stop + 1] == end - key_stop - 2 < 0x80:
        key_start, value_start, value_stop = 2, key_stop + 2, end  # both lengths one byte
    else:
        key_start, key_stop = _length(data, 1, end)
        if key_stop >= end or data[key_stop] != 0x12:
            raise _Refused
        value_start, value_stop = _length(data, key_stop + 1, end)
        if value_stop != end or value_start >= value_stop:
            raise _Refused
    name = _text(data, key_start, key_stop)
    expected = vocabulary.get(name)
    if expected is not None and expected is not _ANY and expected is not _TYPE_OF_TAG.get(data[value_start]):
        raise _Refused  # a type mismatch: protobuf's path words the error
    return name, _value(data, value_start, value_stop)


class WireDecoder:
    """Reads a serialized native ``CheckRequest``'s attributes, remembering decoded map entries.

    ``path_mode`` normalizes ``request.path`` and ``request.url_path`` as
    :func:`policy.servers.paths.normalize_attributes` would (one of its ``MODES``),
    once per distinct entry.

    Two memos, bounded in count and in the size of what they keep (emptied when full: a
    request id or time differs on every request and would otherwise crowd them out):

    * entry bytes → its ``(name, value)``: at most ``max_entries`` entries of at most
      :data:`MAX_ENTRY_BYTES` bytes (a larger one is decoded each time);
    * entry bytes → the *run* of entries that followed it last time, up to the next
      entry not seen before (a request id, a time) or the end: its bytes and values;
      at most ``max_runs`` runs of at most :data:`MAX_RUN_BYTES` bytes.
      A client writes a request's attributes in a stable order (Envoy's and protobuf's
      own serializers do for the same attributes), so when the bytes after an entry
      equal its run (one C-level comparison), the run's values are added at once
      instead of entry by entry. Values come from the bytes alone, so a run matched
      is decoded exactly as its entries one by one would be.
    """

    __slots__ = ("vocabulary", "path_mode", "max_entries", "max_runs", "_memo", "_runs")

    def __init__(self, vocabulary: Mapping[str, ValueType], path_mode: str = "none",
                 max_entries: int = 4096, max_runs: int = 512) -> None:
        self.vocabulary = vocabulary
        self.path_mode = path_mode
        self.max_entries = max_entries
        self.max_runs = max_runs
        # entry bytes → (name, value, is a map); a map value is copied for each request.
        self._memo: dict[bytes, tuple[str, Any, bool]] = {}
        # entry bytes → (bytes of the entries after it, their values by name, names whose value is a map).
        self._runs: dict[bytes, tuple[bytes, dict[str, Any], tuple[str, ...]]] = {}

    def _decode_entry(self, raw: bytes) -> tuple[str, Any, bool]:
        # The memo maps an entry's own bytes to its value, whatever surrounds them.
        name, value = _entry(raw, self.vocabulary)
        if name in PATH_ATTRIBUTES and value.__class__ is str and self.path_mode != "none":
            value = normalize_path(value, merge_slashes=self.path_mode == "merge-slashes")
        hit = (name, value, value.__class__ is dict)
        if len(raw) <= MAX_ENTRY_BYTES:
            memo = self._memo
            if len(memo) >= self.max_entries:
                memo.clear()
            memo[raw] = hit
        return hit

    def _learn(self, anchor: bytes, run: bytes, entries: list[tuple[str, Any, bool]]) -> None:
        if len(run) > MAX_RUN_BYTES:
            return
        values = {name: value for name, value, _ in entries}  # a repeated name: the last one, as protobuf
        runs = self._runs
        if len(runs) >= self.max_runs:
            runs.clear()
        runs[anchor] = (run, values, tuple(name for name, value in values.items() if value.__class__ is dict))

    def attributes(self, data: bytes) -> dict[str, Any] | None:
        """The attributes of a serialized ``CheckRequest``, or None when protobuf must decode it.

        None for anything but the attributes field alone in the layout serializers
        write, or an attribute that does not decode or agrees with the vocabulary
        (see the module docstring); otherwise the values are those
        :func:`~policy.servers.native_codec.attributes_from_proto` gives, paths
        normalized by ``path_mode``.
        """
        end = len(data)
        lookup = self._memo.get
        find_run = self._runs.get
        out: dict[str, Any] = {}
        anchor = None  # the entry whose run is being learned (None: not learning)
        learned: list[tuple[str, Any, bool]] = []
        run_start = 0
        try:
            if end == 0:
                return out
            if data[0] != 0x0A:
                return None
            size = data[1]
            if size < 0x80:
                pos, stop = 2, 2 + size
            elif data[2] < 0x80:  # most requests: 128 bytes to 16 KiB of attributes
                pos, stop = 3, 3 + (size & 0x7F | data[2] << 7)
            else:
                pos, stop = _length(data, 1, end)
            if stop != end:
                return None  # another field follows (quotas, a deduplication id ...) or bytes are missing
            while pos < end:
                if data[pos] != 0x0A:
                    return None
                entry_start = pos
                size = data[pos + 1]
                if size < 0x80:
                    pos += 2
                    stop = pos + size  # past the end only when truncated: then pos != end below
                else:
                    pos, stop = _length(data, pos + 1, end)
                raw = data[pos:stop]
                hit = lookup(raw)
                pos = stop
                if hit is None:  # not seen before: ends the run being learned, anchors none
                    hit = self._decode_entry(raw)
                    if anchor is not None:
                        if stop <= end:
                            self._learn(anchor, data[run_start:entry_start], learned)
                        anchor = None
                    name, value, is_map = hit
                    out[name] = dict(value) if is_map else value
                    continue
                name, value, is_map = hit
                out[name] = dict(value) if is_map else value
                if anchor is not None:
                    learned.append(hit)
                    continue
                run = find_run(raw)
                if run is not None and data.startswith(run[0], pos):
                    out.update(run[1])
                    for name in run[2]:
                        out[name] = dict(out[name])
                    pos += len(run[0])
                else:
                    anchor, run_start, learned = raw, pos, []
            if anchor is not None and pos == end and run_start < end:
                self._learn(anchor, data[run_start:end], learned)
        except (_Refused, IndexError):
            return None
        if pos != end:
            return None
        return out

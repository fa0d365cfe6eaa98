"""Status codes (google.rpc.Code) and the one gRPC → HTTP mapping used everywhere."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Code(enum.IntEnum):
    """google.rpc.Code values; the same numbers gRPC uses."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# The mapping documented beside each code in google/rpc/code.proto.
_HTTP_STATUS: dict[Code, int] = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


def http_status(code: int) -> int:
    """Map a gRPC status code to its HTTP status (unknown codes → 500)."""
    try:
        return _HTTP_STATUS[Code(code)]
    except ValueError:
        return 500


def parse_code(value: str | int) -> Code:
    """Parse a code given by name (``PERMISSION_DENIED``) or number (``7``).

    Raises ValueError naming the value when it is neither.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a status code: {value!r}")
    if isinstance(value, int):
        try:
            return Code(value)
        except ValueError:
            raise ValueError(f"not a status code: {value}") from None
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return parse_code(int(text))
    try:
        return Code[text.upper()]
    except KeyError:
        raise ValueError(
            f"not a status code: {value!r} (expected a name such as PERMISSION_DENIED or 0-16)"
        ) from None


@dataclass(frozen=True, slots=True)
class Status:
    """A status: a code and a message for humans.

    :param code: the gRPC status code (OK allows).
    :param message: why, for humans (empty for OK).
    """

    code: Code = Code.OK
    message: str = ""

    @property
    def ok(self) -> bool:
        """True when the code is OK."""
        return self.code == Code.OK

    def __str__(self) -> str:
        return self.code.name if not self.message else f"{self.code.name}:{self.message}"


OK = Status()

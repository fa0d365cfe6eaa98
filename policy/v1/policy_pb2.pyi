import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Value(_message.Message):
    __slots__ = ("string_value", "int64_value", "double_value", "bool_value", "bytes_value", "timestamp_value", "duration_value", "ip_address_value", "string_map_value")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT64_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_VALUE_FIELD_NUMBER: _ClassVar[int]
    DURATION_VALUE_FIELD_NUMBER: _ClassVar[int]
    IP_ADDRESS_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_MAP_VALUE_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    int64_value: int
    double_value: float
    bool_value: bool
    bytes_value: bytes
    timestamp_value: _timestamp_pb2.Timestamp
    duration_value: _duration_pb2.Duration
    ip_address_value: bytes
    string_map_value: StringMap
    def __init__(self, string_value: _Optional[str] = ..., int64_value: _Optional[int] = ..., double_value: _Optional[float] = ..., bool_value: _Optional[bool] = ..., bytes_value: _Optional[bytes] = ..., timestamp_value: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_value: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., ip_address_value: _Optional[bytes] = ..., string_map_value: _Optional[_Union[StringMap, _Mapping]] = ...) -> None: ...

class StringMap(_message.Message):
    __slots__ = ("entries",)
    class EntriesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.ScalarMap[str, str]
    def __init__(self, entries: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Attributes(_message.Message):
    __slots__ = ("values",)
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.MessageMap[str, Value]
    def __init__(self, values: _Optional[_Mapping[str, Value]] = ...) -> None: ...

class CheckRequest(_message.Message):
    __slots__ = ("attributes", "quotas", "deduplication_id")
    class QuotaParams(_message.Message):
        __slots__ = ("amount", "best_effort")
        AMOUNT_FIELD_NUMBER: _ClassVar[int]
        BEST_EFFORT_FIELD_NUMBER: _ClassVar[int]
        amount: int
        best_effort: bool
        def __init__(self, amount: _Optional[int] = ..., best_effort: _Optional[bool] = ...) -> None: ...
    class QuotasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: CheckRequest.QuotaParams
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[CheckRequest.QuotaParams, _Mapping]] = ...) -> None: ...
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    QUOTAS_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    attributes: Attributes
    quotas: _containers.MessageMap[str, CheckRequest.QuotaParams]
    deduplication_id: str
    def __init__(self, attributes: _Optional[_Union[Attributes, _Mapping]] = ..., quotas: _Optional[_Mapping[str, CheckRequest.QuotaParams]] = ..., deduplication_id: _Optional[str] = ...) -> None: ...

class CheckResponse(_message.Message):
    __slots__ = ("precondition", "quotas", "matched_rules", "decision_id")
    class PreconditionResult(_message.Message):
        __slots__ = ("status", "valid_duration", "valid_use_count", "referenced_attributes", "route_directive")
        STATUS_FIELD_NUMBER: _ClassVar[int]
        VALID_DURATION_FIELD_NUMBER: _ClassVar[int]
        VALID_USE_COUNT_FIELD_NUMBER: _ClassVar[int]
        REFERENCED_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
        ROUTE_DIRECTIVE_FIELD_NUMBER: _ClassVar[int]
        status: _status_pb2.Status
        valid_duration: _duration_pb2.Duration
        valid_use_count: int
        referenced_attributes: ReferencedAttributes
        route_directive: RouteDirective
        def __init__(self, status: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., valid_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., valid_use_count: _Optional[int] = ..., referenced_attributes: _Optional[_Union[ReferencedAttributes, _Mapping]] = ..., route_directive: _Optional[_Union[RouteDirective, _Mapping]] = ...) -> None: ...
    class QuotaResult(_message.Message):
        __slots__ = ("status", "valid_duration", "granted_amount", "referenced_attributes")
        STATUS_FIELD_NUMBER: _ClassVar[int]
        VALID_DURATION_FIELD_NUMBER: _ClassVar[int]
        GRANTED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
        REFERENCED_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
        status: _status_pb2.Status
        valid_duration: _duration_pb2.Duration
        granted_amount: int
        referenced_attributes: ReferencedAttributes
        def __init__(self, status: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., valid_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., granted_amount: _Optional[int] = ..., referenced_attributes: _Optional[_Union[ReferencedAttributes, _Mapping]] = ...) -> None: ...
    class QuotasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: CheckResponse.QuotaResult
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[CheckResponse.QuotaResult, _Mapping]] = ...) -> None: ...
    PRECONDITION_FIELD_NUMBER: _ClassVar[int]
    QUOTAS_FIELD_NUMBER: _ClassVar[int]
    MATCHED_RULES_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    precondition: CheckResponse.PreconditionResult
    quotas: _containers.MessageMap[str, CheckResponse.QuotaResult]
    matched_rules: _containers.RepeatedScalarFieldContainer[str]
    decision_id: str
    def __init__(self, precondition: _Optional[_Union[CheckResponse.PreconditionResult, _Mapping]] = ..., quotas: _Optional[_Mapping[str, CheckResponse.QuotaResult]] = ..., matched_rules: _Optional[_Iterable[str]] = ..., decision_id: _Optional[str] = ...) -> None: ...

class ReferencedAttributes(_message.Message):
    __slots__ = ("attribute_matches",)
    class Condition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CONDITION_UNSPECIFIED: _ClassVar[ReferencedAttributes.Condition]
        ABSENCE: _ClassVar[ReferencedAttributes.Condition]
        EXACT: _ClassVar[ReferencedAttributes.Condition]
        REGEX: _ClassVar[ReferencedAttributes.Condition]
    CONDITION_UNSPECIFIED: ReferencedAttributes.Condition
    ABSENCE: ReferencedAttributes.Condition
    EXACT: ReferencedAttributes.Condition
    REGEX: ReferencedAttributes.Condition
    class AttributeMatch(_message.Message):
        __slots__ = ("name", "condition", "map_key")
        NAME_FIELD_NUMBER: _ClassVar[int]
        CONDITION_FIELD_NUMBER: _ClassVar[int]
        MAP_KEY_FIELD_NUMBER: _ClassVar[int]
        name: str
        condition: ReferencedAttributes.Condition
        map_key: str
        def __init__(self, name: _Optional[str] = ..., condition: _Optional[_Union[ReferencedAttributes.Condition, str]] = ..., map_key: _Optional[str] = ...) -> None: ...
    ATTRIBUTE_MATCHES_FIELD_NUMBER: _ClassVar[int]
    attribute_matches: _containers.RepeatedCompositeFieldContainer[ReferencedAttributes.AttributeMatch]
    def __init__(self, attribute_matches: _Optional[_Iterable[_Union[ReferencedAttributes.AttributeMatch, _Mapping]]] = ...) -> None: ...

class HeaderOperation(_message.Message):
    __slots__ = ("name", "value", "operation")
    class Operation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        REPLACE: _ClassVar[HeaderOperation.Operation]
        REMOVE: _ClassVar[HeaderOperation.Operation]
        APPEND: _ClassVar[HeaderOperation.Operation]
    REPLACE: HeaderOperation.Operation
    REMOVE: HeaderOperation.Operation
    APPEND: HeaderOperation.Operation
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    operation: HeaderOperation.Operation
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ..., operation: _Optional[_Union[HeaderOperation.Operation, str]] = ...) -> None: ...

class RouteDirective(_message.Message):
    __slots__ = ("request_header_operations", "response_header_operations", "direct_response_code", "direct_response_body")
    REQUEST_HEADER_OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_HEADER_OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    DIRECT_RESPONSE_CODE_FIELD_NUMBER: _ClassVar[int]
    DIRECT_RESPONSE_BODY_FIELD_NUMBER: _ClassVar[int]
    request_header_operations: _containers.RepeatedCompositeFieldContainer[HeaderOperation]
    response_header_operations: _containers.RepeatedCompositeFieldContainer[HeaderOperation]
    direct_response_code: int
    direct_response_body: str
    def __init__(self, request_header_operations: _Optional[_Iterable[_Union[HeaderOperation, _Mapping]]] = ..., response_header_operations: _Optional[_Iterable[_Union[HeaderOperation, _Mapping]]] = ..., direct_response_code: _Optional[int] = ..., direct_response_body: _Optional[str] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("attributes",)
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedCompositeFieldContainer[Attributes]
    def __init__(self, attributes: _Optional[_Iterable[_Union[Attributes, _Mapping]]] = ...) -> None: ...

class ReportResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

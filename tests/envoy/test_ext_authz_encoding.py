"""The encoded CheckResponse equals protobuf's encoding of ``check_response``, shared prefixes included.

``encode_check_response`` reuses encodings: per cached decision (``decision.memo``) and,
for plain decisions (a status, an HTTP status and a body), between decisions that answer
the same. Each case decodes what it sends and compares it with the message built field by field.
"""

from __future__ import annotations

import itertools

from envoy.service.auth.v3 import external_auth_pb2

from policy.runtime.decision import Decision, new_decision_id
from policy.sdk import Code, HeaderOperation, HeaderOperationKind, QuotaResult, Status
from policy.servers import ext_authz
from policy.servers.ext_authz import check_response, encode_check_response

STATUSES = [Status(), Status(Code.PERMISSION_DENIED, "blocked"), Status(Code.PERMISSION_DENIED, "other"),
            Status(Code.UNAUTHENTICATED, ""), Status(Code.RESOURCE_EXHAUSTED, "x" * 300)]
EXTRAS = [{}, {"http_status": 418}, {"body": "go away"}, {"http_status": 302, "body": ""}, {"body": "b" * 300},
          {"metadata": {"k": "v"}}, {"request_headers": (HeaderOperation("x-a", "1"),)},
          {"response_headers": (HeaderOperation("x-b", "2", HeaderOperationKind.APPEND),)},
          {"query_parameters_to_set": (("q", "1"),)}, {"query_parameters_to_remove": ("r",)},
          {"quotas": {"q": QuotaResult(granted_amount=1)}},
          {"quotas": {"q": QuotaResult(granted_amount=0, status=Status(Code.RESOURCE_EXHAUSTED, "out"))}}]


def _decoded(data: bytes) -> external_auth_pb2.CheckResponse:
    return external_auth_pb2.CheckResponse.FromString(data)


def test_every_decision_encodes_as_its_response_however_often_and_in_whatever_order():
    ext_authz._prefixes.clear()
    decisions = [Decision(status=status, decision_id=new_decision_id(), **extra)
                 for status, extra in itertools.product(STATUSES, EXTRAS)]
    for round_ in range(2):  # the second round answers from the shared prefixes the first one made
        for decision in decisions:
            fresh = Decision(**{**decision.__dict__, "memo": {}, "decision_id": new_decision_id()})
            assert _decoded(encode_check_response(fresh)) == check_response(fresh), (round_, fresh)
    assert 0 < len(ext_authz._prefixes) < len(decisions)  # plain ones shared, the others encoded alone


def test_the_shared_prefixes_are_bounded():
    ext_authz._prefixes.clear()
    for index in range(ext_authz._PREFIX_LIMIT + 10):
        decision = Decision(status=Status(Code.PERMISSION_DENIED, f"no {index}"), decision_id=new_decision_id())
        assert _decoded(encode_check_response(decision)) == check_response(decision)
    assert len(ext_authz._prefixes) <= ext_authz._PREFIX_LIMIT

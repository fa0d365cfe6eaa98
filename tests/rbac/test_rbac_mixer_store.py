"""Mixer's own RBAC store table (mixer_data/rbac_store.yaml, from rbacStore_test.go) against our rbac adapter.

The handler is built by the adapter from the documents, and each case is an
``authorization`` instance built the way Mixer's test built it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adapters.rbac import RbacAdapter
from policy import BuildContext, parse_params
from policy.sdk.templates import Action, Authorization, Subject

DATA = yaml.safe_load((Path(__file__).parent / "mixer_data" / "rbac_store.yaml").read_text())


@pytest.fixture(scope="module")
def handler():
    documents = [{**d, "_source": "rbac_store.yaml"} for d in yaml.safe_load_all(DATA["documents"])]
    return RbacAdapter.build(parse_params(RbacAdapter.Params, {}), BuildContext(handler="mixer",
                                                                               extras={"documents": documents}))


@pytest.mark.parametrize("case", DATA["cases"], ids=[f"{i}:{c[1]}{c[2]}:{c[7]}" for i, c in enumerate(DATA["cases"])])
def test_rbac_store_check_permission(handler, case):
    namespace, service, path, method, version, source_ns, source_svc, user, expected = case
    instance = Authorization(
        name="authz",
        subject=Subject(user=user, groups=user, properties={"namespace": source_ns, "service": source_svc}),
        action=Action(namespace=namespace, service=service, path=path, method=method,
                      properties={"version": version}))
    result = handler.check(instance)
    assert result.status.ok is expected, result.status.message

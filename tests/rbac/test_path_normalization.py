"""Envoy's path normalization for the native API and ``policy check`` (policy/servers/paths.py).

Cases follow Envoy's ``normalize_path`` (RFC 3986 dot segments, ``\\`` to ``/``, unreserved
escapes decoded) and ``merge_slashes``, and Istio's path-normalization integration test
(tests/integration/security/testdata/authz/path-normalization.yaml.tmpl): a DENY on
``/public`` must also deny ``/public/../public``-style spellings.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from policy import Code
from policy.servers.paths import normalize_attributes, normalize_path
from policy.testing import native_check
from tests.rbac.conftest import config_text

ROOT = Path(__file__).resolve().parents[2]

CASES = [
    # (path, normalize_path only, with merge_slashes)
    ("/a/b", "/a/b", "/a/b"),
    ("/a/./b", "/a/b", "/a/b"),
    ("/a/../b", "/b", "/b"),
    ("/../../b", "/b", "/b"),
    ("/a/b/..", "/a/", "/a/"),
    ("/a/b/.", "/a/b/", "/a/b/"),
    ("/a/%2e%2E/b", "/b", "/b"),
    ("/a\\..\\b", "/b", "/b"),
    ("/%41%62c", "/Abc", "/Abc"),
    ("/a%2fb", "/a%2Fb", "/a%2Fb"),
    ("//a//b", "//a//b", "/a/b"),
    ("/a b", "/a%20b", "/a%20b"),
    ("/a/../b?x=/../y", "/b?x=/../y", "/b?x=/../y"),
    ("/caf\u00e9", "/caf%C3%A9", "/caf%C3%A9"),
    ("*", "*", "*"),
]


@pytest.mark.parametrize(("path", "base", "merged"), CASES)
def test_normalize_path(path, base, merged):
    assert normalize_path(path, merge_slashes=False) == base
    assert normalize_path(path) == merged


def test_normalize_attributes_modes():
    values = {"request.path": "//a/../b?q", "request.url_path": "//a/../b", "x": 1}
    assert normalize_attributes(values, "none") is values
    assert normalize_attributes(values, "base") == {"request.path": "//b?q", "request.url_path": "//b", "x": 1}
    assert normalize_attributes(values, "merge-slashes")["request.path"] == "/b?q"


DENY_ADMIN = """
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: foo}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ['/admin*']}}]}]
"""


async def test_native_api_normalizes_paths(policy_config, policy_server_factory):
    running = await policy_server_factory(policy_config(config_text(DENY_ADMIN)))
    stub = running.native()
    for path in ("/admin", "/public/../admin", "//admin/x", "/%61dmin"):
        response = await native_check(stub, {"destination.namespace": "foo", "request.path": path})
        assert response.precondition.status.code == Code.PERMISSION_DENIED, path
    ok = await native_check(stub, {"destination.namespace": "foo", "request.path": "/public/admin"})
    assert ok.precondition.status.code == Code.OK


@pytest.mark.parametrize(("mode", "code"), [("merge-slashes", 1), ("base", 1), ("none", 0)])
def test_policy_check_normalizes_unless_told_not_to(tmp_path, mode, code):
    (tmp_path / "policy.yaml").write_text(config_text(DENY_ADMIN))
    result = subprocess.run([sys.executable, "-m", "policy.cli", "check", "--config", str(tmp_path),
                             "--path-normalization", mode, "--attr", "destination.namespace=foo",
                             "--attr", "request.path=/x/../admin"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == code, result.stdout + result.stderr

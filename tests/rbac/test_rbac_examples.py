"""examples/rbac as a user runs it: ``policy check`` in a subprocess prints each decision's reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ISTIO = ROOT / "examples" / "rbac" / "istio"
MIXER = ROOT / "examples" / "rbac" / "mixer"
BOOKS = ["--attr", "destination.namespace=shop", "--attr", "destination.labels=app:books"]


def check(config: Path, *attrs: str) -> subprocess.CompletedProcess:
    args = [a for attr in attrs for a in ("--attr", attr)]
    return subprocess.run([sys.executable, "-m", "policy.cli", "check", "--no-autoload", "--config", str(config),
                           *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.mark.parametrize(("attrs", "code", "line"), [
    (["source.principal=spiffe://cluster.local/ns/shop/sa/frontend", "source.ip=10.1.2.3", "request.method=GET",
      "request.path=/api/books/42"], 0, "OK RBAC: allowed by ns[shop]-policy[books]-rule[0]"),
    (["request.method=DELETE", "request.path=/api/books/42"], 1,
     "PERMISSION_DENIED RBAC: access denied: no ALLOW policy matched (dry-run DENY policies: would be denied by"
     " ns[shop]-policy[internal-only]-rule[0]; audited by ns[shop]-policy[audit-writes]-rule[0])"),
    (["request.path=/admin/reindex", "request.headers[x-admin-token]=s3cret"], 0,
     "(CUSTOM provider 'ext-opa' allowed ns[shop]-policy[admin-token]-rule[0])"),
    (["request.path=/admin/reindex"], 1,
     "RBAC: access denied by CUSTOM provider 'ext-opa' for ns[shop]-policy[admin-token]-rule[0]"),
    (["source.principal=spiffe://cluster.local/ns/shop/sa/frontend", "request.method=GET",
      "request.path=/api/books", "request.headers[x-user]=mallory"], 1,
     "access denied by ns[istio-system]-policy[block-mallory]-rule[0]"),
])
def test_istio_example(attrs, code, line):
    result = check(ISTIO, *BOOKS[1::2], *attrs)
    assert result.returncode == code, result.stdout + result.stderr
    assert line in result.stdout


def test_mixer_example():
    base = ["destination.namespace=default", "destination.service.host=productpage.default.svc.cluster.local",
            "request.method=GET", "request.path=/productpage"]
    allowed = check(MIXER, *base, "source.principal=cluster.local/ns/default/sa/bookinfo-productpage")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "RBAC: allowed by ServiceRoleBinding default/bind-products-viewer (ServiceRole products-viewer)" \
        in allowed.stdout
    denied = check(MIXER, *base, "source.principal=cluster.local/ns/default/sa/other")
    assert denied.returncode == 1
    assert "no binding of ServiceRole products-viewer matches the subject" in denied.stdout

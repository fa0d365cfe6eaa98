"""``policy validate`` on Mixer documents: Istio's bookinfo rate-limit samples load, Mixer's build errors are named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.mixer.conftest import FIXTURES


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "policy.cli", "validate", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("bookinfo-*.yaml")))
def test_bookinfo_rate_limit_samples_validate(fixture):
    done = validate(FIXTURES / fixture)
    assert done.returncode == 0, done.stderr


def test_a_quota_without_a_limit_is_named_with_file_document_and_field(tmp_path):
    """memquota.go: Mixer refused to build a handler routed a quota it has no limit for."""
    path = tmp_path / "policy.yaml"
    path.write_text((FIXTURES / "bookinfo-productpage-ratelimit.yaml").read_text().replace(
        "name: requestcountquota.instance.istio-system", "name: othername.instance.istio-system"))
    done = validate(path)
    assert done.returncode != 0
    assert (f"{path}: handler/quotahandler.istio-system: spec.params.quotas: no limit is defined for quota"
            " instance requestcountquota.instance.istio-system") in done.stderr

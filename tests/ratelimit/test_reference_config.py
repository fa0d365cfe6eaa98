"""envoyproxy/ratelimit's config tests, run as data (data/config_cases.yaml) through our config loader."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from policy.config import parse_config
from policy.sdk import ConfigError

HERE = Path(__file__).parent
CASES = yaml.safe_load((HERE / "data" / "config_cases.yaml").read_text())
POLICY = """
settings:
  rateLimit: {{handler: counts, mergeDomainConfigs: {merge}}}
handlers:
  - {{name: counts, adapter: memquota, params: {{quotas: []}}}}
"""
LIMIT_FIELDS = ("requests_per_unit", "unit", "name", "shadow_mode", "quota_mode", "unlimited", "detailed_metric",
                "stats_key")


def config_dir(case: dict, tmp_path: Path) -> Path:
    directory = tmp_path / "config"
    directory.mkdir()
    (directory / "policy.yaml").write_text(POLICY.format(merge=str(case.get("merge", False)).lower()))
    source = HERE / "fixtures" / case.get("dir", "config")
    for index, name in enumerate(case.get("files", [])):
        shutil.copy(source / name, directory / f"rls{index:02d}_{name}")
    if "inline" in case:
        (directory / "rls99_inline.yaml").write_text(yaml.safe_dump(case["inline"]))
    return directory


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_reference_config_case(case, tmp_path, policy_host_factory):
    directory = config_dir(case, tmp_path)
    if "error" in case:
        with pytest.raises(ConfigError) as info:
            parse_config(directory, policy_host_factory())
        want = case["error"]
        found = [i for i in info.value.issues
                 if i.file.endswith(want["file"]) and want["message"] in i.message]
        assert found, f"{case['source']}: no error {want} in {[str(i) for i in info.value.issues]}"
        if "also" in want:
            assert want["also"] in found[0].message
        return
    model = parse_config(directory, policy_host_factory())
    config = model.rate_limit
    assert config is not None
    for lookup in case["lookups"]:
        limit = config.lookup(lookup["domain"], [tuple(e) for e in lookup["entries"]])
        expect = lookup["expect"]
        where = f"{case['source']}: {lookup['entries']}"
        if expect is None:
            assert limit is None, where
            continue
        assert limit is not None, where
        for name in LIMIT_FIELDS:
            if name in expect:
                assert getattr(limit, name) == expect[name], f"{where}: {name}"
        if "share" in expect:
            assert list(limit.share_patterns) == expect["share"], where
        if "metadata" in expect:
            assert (dict(limit.metadata) if limit.metadata else None) == expect["metadata"], where

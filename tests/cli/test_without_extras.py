"""A plain install, with no extras: every command works; adapters needing an extra say which.

The fast tests hide the optional dependencies from a subprocess (``without_extras/sitecustomize.py``);
the slow one installs the checkout into a fresh virtualenv with ``pip install`` and no extras.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HIDE = Path(__file__).parent / "without_extras"

OPA_CONFIG = """
    handlers:
      - {name: opa, adapter: opa, params: {policies: ["package envoy.authz\\nimport rego.v1\\ndefault allow := true"]}}
    instances:
      - {name: request, template: requestcontext, params: {}}
    rules:
      - {name: opa, actions: [{handler: opa, instances: [request]}]}
"""
PROMETHEUS_CONFIG = """
    handlers:
      - {name: prom, adapter: prometheus, params: {metrics: [{name: requests_total, instanceName: requests, kind: COUNTER}]}}
    instances:
      - {name: requests, template: metric, params: {value: "1"}}
    rules:
      - {name: count, actions: [{handler: prom, instances: [requests]}]}
"""


def hidden(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "POLICY_DISABLE_PLUGIN_AUTOLOAD": "1",
           "PYTHONPATH": os.pathsep.join([str(HIDE), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "policy.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=env)


def test_the_hiding_works():
    result = hidden("adapters")  # sanity: the import really fails in that interpreter
    probe = subprocess.run([sys.executable, "-c", "import regopy"], capture_output=True, text=True, timeout=30,
                           env={**os.environ, "PYTHONPATH": str(HIDE)})
    assert probe.returncode != 0 and "regopy" in probe.stderr
    assert result.returncode == 0, result.stderr


def test_adapters_lists_the_unavailable_ones_with_their_extra():
    result = hidden("adapters", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["opa"]["available"] is False and rows["redisquota"]["available"] is False
    assert "pip install 'sidecar-policy[opa]'" in rows["opa"]["description"]
    assert "pip install 'sidecar-policy[redis]'" in rows["redisquota"]["description"]
    assert rows["listchecker"]["available"] is True and rows["rbac"]["available"] is True
    assert rows["opa"]["templates"] == ["requestcontext", "authorization"]
    table = hidden("adapters").stdout
    assert "unavailable: needs the 'opa' extra" in table


def test_check_works_on_a_config_that_needs_no_extra():
    result = hidden("check", "--config", "examples/quickstart", "--attr", "source.ip=10.1.2.3")
    assert result.returncode == 0, result.stderr
    assert "ALLOWED" in result.stdout


@pytest.mark.parametrize("text, adapter, extra", [(OPA_CONFIG, "opa", "opa"),
                                                   (PROMETHEUS_CONFIG, "prometheus", "prometheus")])
@pytest.mark.parametrize("command", ["validate", "check"])
def test_a_config_using_an_unavailable_adapter_is_a_config_error_naming_the_extra(tmp_path, text, adapter,
                                                                                  extra, command):
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    args = ("validate", str(path)) if command == "validate" else ("check", "--config", str(path))
    result = hidden(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"pip install 'sidecar-policy[{extra}]'" in result.stderr
    assert f"adapter {adapter!r}" in result.stderr and str(path) in result.stderr


@pytest.mark.slow
def test_plain_pip_install_in_a_fresh_virtualenv(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environ["POLICY_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              str(ROOT)], capture_output=True, text=True, timeout=900, env=environ)
    assert install.returncode == 0, install.stdout + install.stderr
    assert "would be ignored" not in install.stderr
    policy = env_dir / "bin" / "policy"
    workdir = tmp_path / "elsewhere"  # not the checkout: the installed package is what runs
    workdir.mkdir()
    gone = subprocess.run([str(python), "-c", "import regopy"], capture_output=True, text=True, timeout=60,
                          env=environ, cwd=workdir)
    assert gone.returncode != 0  # really no extras
    listed = subprocess.run([str(policy), "adapters"], capture_output=True, text=True, timeout=120,
                            env=environ, cwd=workdir)
    assert listed.returncode == 0, listed.stderr
    assert "pip install 'sidecar-policy[opa]'" in listed.stdout
    checked = subprocess.run([str(policy), "check", "--config", str(ROOT / "examples" / "quickstart"),
                              "--attr", "source.ip=10.1.2.3"], capture_output=True, text=True, timeout=120,
                             env=environ, cwd=workdir)
    assert checked.returncode == 0, checked.stderr
    assert "ALLOWED" in checked.stdout
    config = tmp_path / "opa.yaml"
    config.write_text(textwrap.dedent(OPA_CONFIG))
    refused = subprocess.run([str(policy), "validate", str(config)], capture_output=True, text=True,
                             timeout=120, env=environ, cwd=workdir)
    assert refused.returncode == 2 and "pip install 'sidecar-policy[opa]'" in refused.stderr, refused.stderr


def test_stand_ins_declare_what_the_real_adapters_are():
    """adapters.OPTIONAL_PLUGINS must name each optional adapter and its templates as the module does."""
    import importlib

    from adapters import BUILTIN_PLUGINS, OPTIONAL_PLUGINS
    from policy.runtime.plugins import build_plugin_host

    host = build_plugin_host(autoload=False)  # this interpreter has every extra
    for module_name, (extra, adapter_name, templates) in OPTIONAL_PLUGINS.items():
        assert module_name in BUILTIN_PLUGINS
        importlib.import_module(module_name)
        registered = host.adapters.get(adapter_name)
        assert registered is not None and not getattr(registered.adapter, "unavailable", "")
        assert tuple(registered.adapter.templates) == templates, module_name
        assert extra in {"opa", "redis"}

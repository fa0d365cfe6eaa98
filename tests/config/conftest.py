"""Fixtures for config tests: a plugin host with small test adapters, and a config writer."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from policy import Adapter, BuildContext, CheckResult, FieldError, Handler, Template, ValueMap, Variety, hookimpl, param
from policy.attributes import ValueType
from policy.runtime.plugins import PluginHost, build_plugin_host


@dataclass(frozen=True)
class Limit:
    """One entry of ListParams.limits."""

    name: str = param(doc="name")
    max: int = param(1, doc="max")


@dataclass(frozen=True)
class ListParams:
    """Params of the ``testlist`` adapter."""

    overrides: list[str] = param(default_factory=list, doc="entries")
    blacklist: bool = param(False, doc="deny listed")
    limits: list[Limit] = param(default_factory=list, doc="limits")
    fail_build: bool = param(False, doc="make build raise")


class RecordingHandler(Handler):
    """A handler that remembers its context and whether it was closed."""

    def __init__(self, params: Any, context: BuildContext) -> None:
        self.params = params
        self.context = context
        self.closed = False

    def check(self, instance: Any) -> CheckResult:
        return CheckResult.allow()

    def quota(self, instance: Any, args: Any) -> Any:
        raise NotImplementedError

    def report(self, instances: Any) -> None:
        return None

    async def close(self) -> None:
        self.closed = True


BUILT: list[RecordingHandler] = []


class ListAdapter(Adapter):
    """A list checker for tests."""

    name = "testlist"
    description = "test list"
    templates = ("listentry",)
    Params = ListParams

    @classmethod
    def validate(cls, params: ListParams) -> Any:
        for i, entry in enumerate(params.overrides):
            if entry == "bad":
                yield FieldError(f"overrides[{i}]", "'bad' is not a valid entry")

    @classmethod
    def build(cls, params: ListParams, context: BuildContext) -> Handler:
        if params.fail_build:
            raise RuntimeError("backend unreachable")
        handler = RecordingHandler(params, context)
        BUILT.append(handler)
        return handler


class MultiAdapter(Adapter):
    """An adapter with check, quota and report templates."""

    name = "testmulti"
    templates = ("checknothing", "authorization", "quota", "reportnothing", "metric", "logentry",
                 "withdefaults", "brokendefaults")

    @classmethod
    def build(cls, params: Any, context: BuildContext) -> Handler:
        handler = RecordingHandler(params, context)
        BUILT.append(handler)
        return handler


def _as_dict(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, **fields}


class ConfigTestPlugin:
    """Registers the test adapters."""

    __name__ = "config-test-plugin"

    @hookimpl
    def policy_register_templates(self, registry: Any) -> None:
        s = ValueType.STRING
        fields = {"value": s, "group": {"a": s, "b": s}, "dims": ValueMap(s)}
        registry.add(Template("withdefaults", Variety.CHECK, fields, _as_dict, defaults={
            "value": 'request.path | "/"', "group": {"a": '"A"', "b": '"B"'}, "dims": {"x": '"1"'}}))
        registry.add(Template("brokendefaults", Variety.CHECK, fields, _as_dict,
                              defaults={"value": "nosuch.attribute"}))

    @hookimpl
    def policy_register_adapters(self, registry: Any) -> None:
        registry.add(ListAdapter)
        registry.add(MultiAdapter)


@pytest.fixture(scope="session")
def host() -> PluginHost:
    """A plugin host with the test adapters (and whatever built-ins exist)."""
    return build_plugin_host(autoload=False, extra_plugins=[ConfigTestPlugin()])


@pytest.fixture
def built() -> Iterator[list[RecordingHandler]]:
    """The handlers the test adapters built during the test, in build order."""
    BUILT.clear()
    yield BUILT
    BUILT.clear()


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """Write a dedented config file under tmp_path and return its path."""

    def _write(text: str, name: str = "policy.yaml", directory: Path | None = None) -> Path:
        path = (directory or tmp_path) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write

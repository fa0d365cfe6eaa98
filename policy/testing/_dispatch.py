"""The ``dispatch`` step of the conformance check: the adapter served from a real config."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from policy.sdk import Adapter, Code, ConfigError, Handler, QuotaArgs, Variety

HANDLER = "conformance-handler"
FAULT = "injected fault"


class _Faulty(Handler):
    """Raises from every request method, as a crashing adapter would."""

    def __init__(self, wrapped: Handler) -> None:
        self.wrapped = wrapped

    def check(self, instance: Any) -> Any:
        """Crash."""
        raise RuntimeError(FAULT)

    def quota(self, instance: Any, args: Any) -> Any:
        """Crash."""
        raise RuntimeError(FAULT)

    def report(self, instances: Any) -> None:
        """Crash."""
        raise RuntimeError(FAULT)

    async def close(self) -> None:
        """Closing is left to the real handler (restored before the service stops)."""


def _config(adapter: type[Adapter], raw: Mapping[str, Any], templates: dict[str, Any]) -> str:
    instances = [{"name": f"conformance-{name}", "template": name, "params": {}} for name in templates]
    return yaml.safe_dump({
        "handlers": [{"name": HANDLER, "adapter": adapter.name, "params": dict(raw)}],
        "instances": instances,
        "rules": [{"name": "conformance", "actions": [
            {"handler": HANDLER, "instances": [i["name"] for i in instances]}]}],
    }, sort_keys=False)


async def run_dispatch(host: Any, adapter: type[Adapter], raw: Mapping[str, Any],
                       config_dir: Path) -> list[tuple[str, str]]:
    """Serve ``adapter`` with params ``raw`` from a config in ``config_dir``; return (step, problem) pairs."""
    from policy.runtime.service import PolicyService

    templates = {name: host.templates.get(name) for name in adapter.templates}
    varieties = {t.variety for t in templates.values() if t is not None}
    quota_names = [f"conformance-{n}" for n, t in templates.items() if t is not None and t.variety is Variety.QUOTA]
    path = config_dir / f".policy-conformance-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(_config(adapter, raw, templates))
    problems: list[tuple[str, str]] = []
    service = PolicyService(path, host, watch_interval=0)
    try:
        try:
            await service.start()
        except ConfigError as exc:
            return [("dispatch", f"a config using the adapter failed to load: {'; '.join(map(str, exc.issues))}")]
        quotas = {name: QuotaArgs(name, 1) for name in quota_names}
        problems += await _served(service, varieties, quotas)
        problems += await _faulted(service, varieties, quotas)
    finally:
        await service.stop()
        path.unlink(missing_ok=True)
    return problems


def _crash(code: Code, message: str) -> bool:
    return code == Code.INTERNAL and "failed:" in message


async def _served(service: Any, varieties: set[Variety], quotas: dict[str, QuotaArgs]) -> list[tuple[str, str]]:
    problems = []
    if Variety.CHECK in varieties:
        decision = await service.check({})
        if _crash(decision.status.code, decision.status.message):
            problems.append(("dispatch", f"a check of an instance with absent fields crashed: {decision.status.message}"))
        for call in decision.calls:
            if call.result.valid_duration is None:
                problems.append(("dispatch", f"served check of {call.instance} declared no cacheability"))
    if quotas:
        decision = await service.check({}, quotas)
        for name, result in decision.quotas.items():
            if _crash(result.status.code, result.status.message):
                problems.append(("dispatch", f"quota {name} with absent dimensions crashed: {result.status.message}"))
    if Variety.REPORT in varieties:
        service.report([{}])
        await service.reports.drain()
        stats = service.reports.stats().get(HANDLER)
        if stats is None or stats.delivered < 1:
            problems.append(("dispatch", "a report was not delivered to the handler"))
        elif stats.failed:
            problems.append(("dispatch", "a report of an instance with absent fields failed (see the log)"))
    return problems


async def _faulted(service: Any, varieties: set[Variety], quotas: dict[str, QuotaArgs]) -> list[tuple[str, str]]:
    problems = []
    entry = service.snapshot.handlers[HANDLER]
    real = entry.handler
    saved = (entry.check_is_async, entry.quota_is_async, entry.report_is_async)
    entry.handler = _Faulty(real)
    entry.check_is_async = entry.quota_is_async = entry.report_is_async = False
    try:
        if service.dispatcher.cache is not None:
            service.dispatcher.cache.clear()
        if Variety.CHECK in varieties:
            decision = await service.check({})
            status = decision.status
            if status.code != Code.INTERNAL or not status.message.startswith(f"{HANDLER}:") or FAULT not in status.message:
                problems.append(("dispatch", f"a crashing check answered {status}, not INTERNAL naming {HANDLER}"))
            if decision.valid_duration:
                problems.append(("dispatch", f"a crashing check's answer is cacheable for {decision.valid_duration}s"))
        if quotas:
            decision = await service.check({}, quotas)
            for name, result in decision.quotas.items():
                if result.status.code != Code.INTERNAL or HANDLER not in result.status.message:
                    problems.append(("dispatch", f"a crashing quota {name} answered {result.status}, "
                                                 f"not INTERNAL naming {HANDLER}"))
        if Variety.REPORT in varieties:
            before = service.reports.stats().get(HANDLER)
            failed = before.failed if before else 0
            service.report([{}])
            await service.reports.drain()
            after = service.reports.stats().get(HANDLER)
            if after is None or after.failed <= failed:
                problems.append(("dispatch", "a crashing report was not counted as failed"))
            if Variety.CHECK not in varieties:
                decision = await service.check({})
                if not decision.allowed:
                    problems.append(("dispatch", f"a crashing report handler failed a check: {decision.status}"))
    finally:
        entry.handler = real
        entry.check_is_async, entry.quota_is_async, entry.report_is_async = saved
    return problems

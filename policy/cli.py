"""The ``policy`` command: serve, check, validate, adapters, bench.

Exit codes: 0 success (``check``: allowed), 1 ``check`` denied, 2 a config or usage error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from policy.cli_values import ValueParseError, parse_attribute_args

EXIT_DENIED = 1
EXIT_USAGE = 2


def _setup_logging(level: str) -> bool:
    """Configure logging on stderr; True when logs are JSON lines (stderr is not a terminal)."""
    from policy.logs import configure_logging

    json_lines = not sys.stderr.isatty()
    configure_logging(level, json_lines=json_lines)
    return json_lines


serve_log = logging.getLogger("policy.serve")


def _log_issue(level: int, issue: Any) -> None:
    """Log a ConfigIssue with its place as fields (``file``, ``document``, ``field``)."""
    serve_log.log(level, "%s", issue, extra={"file": issue.file, "document": issue.document,
                                            "field": issue.field, "severity": issue.severity})


def _host(no_autoload: bool = False) -> Any:
    from policy.runtime.plugins import build_plugin_host
    from policy.sdk import PluginError

    try:
        return build_plugin_host(autoload=False if no_autoload else None)
    except PluginError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


def _fail_config(exc: Any) -> None:
    for issue in exc.issues:
        click.echo(f"error: {issue}", err=True)
    click.echo(f"{len(exc.issues)} error(s); nothing was loaded", err=True)
    sys.exit(EXIT_USAGE)


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


#: The native API and ``policy check`` normalize request paths as Envoy does (policy.servers.paths).
_PATH_NORMALIZATION = click.option(
    "--path-normalization", type=click.Choice(["none", "base", "merge-slashes"]), default="merge-slashes",
    show_default=True, help="Normalize request.path / request.url_path of native-API checks as Envoy's"
                            " normalize_path (base) and merge_slashes would; ext_authz paths arrive normalized.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sidecar-policy", prog_name="policy")
def main() -> None:
    """A sidecar-local policy service: Mixer's adapters behind a fast local gRPC API.

    \b
    Try:
      policy validate examples/quickstart
      policy check --config examples/quickstart --attr source.ip=10.0.0.1
      policy serve --config examples/quickstart
    """


# --- serve -------------------------------------------------------------------


def _listen_address(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from policy.runtime.telemetry import parse_listen_address

    if value is not None:
        try:
            parse_listen_address(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def normalize_listen(value: str) -> str:
    """A ``--listen`` value as the server binds it: a bare port means ``127.0.0.1:PORT``.

    Raises ValueError ("expected HOST:PORT or unix:PATH ...") for anything else that is not
    ``HOST:PORT`` (``[::1]:PORT`` for IPv6) or ``unix:PATH``.
    """
    from policy.runtime.telemetry import parse_listen_address

    text = value.strip()
    if text.startswith("unix:"):
        if not text[len("unix:"):]:
            raise ValueError(f"expected HOST:PORT or unix:PATH, got {value!r} (no path)")
        return text
    if text.isdigit():
        text = f"127.0.0.1:{text}"
    try:
        parse_listen_address(text)
    except ValueError:
        raise ValueError(f"expected HOST:PORT or unix:PATH (or a bare PORT for 127.0.0.1), got {value!r}") from None
    return text


def _listen_addresses(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    try:
        return tuple(normalize_listen(value) for value in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _decision_log(enabled: bool, masks: tuple[str, ...]) -> Any:
    from policy.runtime.decision_log import DecisionLog, with_extra_masks

    if not enabled:
        if masks:
            raise click.UsageError("--decision-log-mask needs --decision-log")
        return None
    try:
        return with_extra_masks(DecisionLog(), masks)
    except ValueError as exc:
        raise click.UsageError(f"--decision-log-mask: {exc}") from None


def _socket_mode(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        raise click.BadParameter(f"expected octal permission bits like 0660, got {value!r}") from None
    if not 0 <= mode <= 0o777:
        raise click.BadParameter(f"expected octal permission bits like 0660, got {value!r}")
    return mode


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="A YAML config file or a directory of them (watched and hot-reloaded).")
@click.option("--listen", "listen", multiple=True, metavar="ADDR", callback=_listen_addresses,
              help="HOST:PORT, a bare PORT (127.0.0.1:PORT) or unix:/path/to.sock; repeat for several."
                   " [default: 127.0.0.1:9191]")
@click.option("--watch-interval", default=1.0, show_default=True, type=float,
              help="Seconds between checks of the config for changes; 0 disables reload.")
@click.option("--grace", default=5.0, show_default=True, type=float,
              help="Seconds to drain in-flight calls on SIGTERM before stopping.")
@click.option("--drain-delay", default=3.0, show_default=True, type=float, envvar="POLICY_DRAIN_DELAY",
              help="On SIGTERM, seconds health says NOT_SERVING while calls are still accepted, before the grace.")
@click.option("--socket-mode", default="0660", show_default=True, callback=_socket_mode,
              help="Permission bits (octal) of the Unix sockets it listens on.")
@click.option("--metrics-listen", metavar="HOST:PORT", default=None, callback=_listen_address,
              help="Serve the service's Prometheus metrics over HTTP here, at /metrics (port 0 picks one;"
                   " needs the 'prometheus' extra).")
@click.option("--decision-log", is_flag=True,
              help="Also send every check decision through the report rules (they see"
                   " context.reporter.kind == \"decision\" and check.*), sensitive headers masked.")
@click.option("--decision-log-mask", "masks", multiple=True, metavar="KIND:NAME",
              help="With --decision-log, also mask header:NAME, query:NAME or attribute:NAME; repeatable.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--no-autoload", is_flag=True, help="Load only built-in adapters (like POLICY_DISABLE_PLUGIN_AUTOLOAD=1).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Serving processes sharing the TCP listen addresses (SO_REUSEPORT), one per core;"
                   " above 1, Unix sockets, port 0 and memquota handlers are refused.")
@click.option("--worker-index", default=None, type=int, hidden=True)
@_PATH_NORMALIZATION
def serve(config_path: Path, listen: tuple[str, ...], watch_interval: float, grace: float, drain_delay: float,
          socket_mode: int, metrics_listen: str | None, decision_log: bool, masks: tuple[str, ...],
          log_level: str, no_autoload: bool, workers: int, worker_index: int | None,
          path_normalization: str) -> None:
    """Serve the native, Envoy and health gRPC APIs on CONFIG until SIGTERM."""
    from policy.runtime.service import PolicyService
    from policy.sdk import ConfigError
    from policy.servers.app import DEFAULT_LISTEN, PolicyServer, run_until_signal
    from policy.servers.workers import die_with_the_supervisor, metrics_address_for, run_workers, worker_listen_problems

    json_logs = _setup_logging(log_level)
    listen = listen or (DEFAULT_LISTEN,)
    if workers > 1:
        problems = worker_listen_problems(listen)
        for problem in problems:
            click.echo(f"error: --workers {workers}: {problem}", err=True)
        if problems:
            sys.exit(EXIT_USAGE)
    if worker_index is not None:
        die_with_the_supervisor()
        metrics_listen = metrics_address_for(metrics_listen, worker_index)
    service = PolicyService(config_path, _host(no_autoload), watch_interval=watch_interval,
                            metrics_listen=metrics_listen, decision_log=_decision_log(decision_log, masks),
                            workers=workers)
    try:
        snapshot = service.load()
    except ConfigError as exc:
        if not json_logs:
            _fail_config(exc)
        for warning in getattr(exc, "warnings", ()):
            _log_issue(logging.WARNING, warning)
        for issue in exc.issues:
            _log_issue(logging.ERROR, issue)
        serve_log.error("%d config error(s); nothing was loaded", len(exc.issues))
        sys.exit(EXIT_USAGE)
    if workers > 1 and worker_index is None:  # the supervisor: the config loads, now start the workers

        def worker_args(index: int) -> list[str]:
            args = ["--config", str(config_path), "--watch-interval", str(watch_interval), "--grace", str(grace),
                    "--drain-delay", str(drain_delay), "--log-level", log_level,
                    "--path-normalization", path_normalization,
                    "--workers", str(workers), "--worker-index", str(index)]
            args += [part for address in listen for part in ("--listen", address)]
            args += ["--metrics-listen", metrics_listen] if metrics_listen else []
            args += ["--decision-log"] if decision_log else []
            args += [part for mask in masks for part in ("--decision-log-mask", mask)]
            args += ["--no-autoload"] if no_autoload else []
            return args

        del service, snapshot  # each worker loads its own
        sys.exit(run_workers(workers, worker_args, grace))
    server = PolicyServer(service, listen, registrars=_registrars(path_normalization),
                          socket_mode=socket_mode, reuse_port=workers > 1)

    def say(line: str) -> None:
        """A start-up line: on stdout for people and scripts, and logged when logs are JSON."""
        click.echo(f"policy: {line}")
        if json_logs:
            serve_log.info("%s", line)

    def ready(addresses: list[str]) -> None:
        say(f"loaded {config_path} (generation {snapshot.generation}):"
            f" {len(snapshot.handlers)} handlers, {len(snapshot.instances)} instances,"
            f" {len(snapshot.rules)} rules from {len(snapshot.sources)} file(s)")
        for warning in snapshot.warnings:
            if json_logs:
                _log_issue(logging.WARNING, warning)
            else:
                click.echo(f"policy: warning: {warning}", err=True)
        say(f"serving {', '.join(server.services)}")
        for address in addresses:
            say(f"listening on {address}")
        if service.telemetry.metrics_address:
            say(f"metrics on http://{service.telemetry.metrics_address}/metrics")
        sys.stdout.flush()

    _use_uvloop()
    try:
        asyncio.run(run_until_signal(server, grace, ready, drain_delay=max(0.0, drain_delay)))
    except OSError as exc:
        if json_logs:
            serve_log.error("%s", exc)
        else:
            click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    say("stopped")


# --- check -------------------------------------------------------------------


def _registrars(path_normalization: str) -> list[Any]:
    """The APIs to serve, the native one normalizing paths by ``path_normalization``."""
    import functools

    from policy.servers import native
    from policy.servers.app import default_registrars

    return [functools.partial(native.register, path_normalization=path_normalization)
            if r is native.register else r for r in default_registrars()]


def _decision_json(decision: Any) -> dict[str, Any]:
    return {
        "code": decision.code.name,
        "message": decision.message,
        "allowed": decision.allowed,
        "valid_duration_s": decision.valid_duration,
        "valid_use_count": decision.valid_use_count,
        "referenced": [{"name": r.name, "map_key": r.map_key, "condition": r.presence.value}
                       for r in decision.referenced],
        "rules": list(decision.rules),
        "calls": [{"rule": c.rule, "handler": c.handler, "instance": c.instance,
                   "code": c.result.status.code.name, "message": c.result.status.message,
                   "valid_duration_s": c.result.valid_duration,
                   "valid_use_count": c.result.valid_use_count} for c in decision.calls],
        "quotas": {name: {"code": q.status.code.name, "message": q.status.message,
                          "granted_amount": q.granted_amount, "valid_duration_s": q.valid_duration}
                   for name, q in decision.quotas.items()},
        "request_headers": [{"name": h.name, "value": h.value, "operation": h.operation.value}
                            for h in decision.request_headers],
        "response_headers": [{"name": h.name, "value": h.value, "operation": h.operation.value}
                             for h in decision.response_headers],
        "decision_id": decision.decision_id,
    }


def _cache_text(duration: float | None, uses: int | None) -> str:
    if not duration:
        return "not cacheable"
    return f"{duration:g}s" + (f", {uses} uses" if uses is not None else "")


def _print_decision(decision: Any) -> None:
    verdict = "ALLOWED" if decision.allowed else "DENIED"
    message = f" — {decision.message}" if decision.message else ""
    click.echo(f"decision:   {verdict} ({decision.code.name}){message}")
    click.echo(f"rules:      {', '.join(decision.rules) or '(none matched)'}")
    if decision.calls:
        click.echo("handlers:")
        for call in decision.calls:
            status = call.result.status
            text = f" {status.message}" if status.message else ""
            click.echo(f"  {call.rule} → {call.handler} ({call.instance}): {status.code.name}{text}"
                       f" [cache {_cache_text(call.result.valid_duration, call.result.valid_use_count)}]")
    for name, quota in decision.quotas.items():
        click.echo(f"quota:      {name}: granted {quota.granted_amount} ({quota.status.code.name}"
                   f"{' ' + quota.status.message if quota.status.message else ''})")
    for label, ops in (("request", decision.request_headers), ("response", decision.response_headers)):
        for op in ops:
            click.echo(f"{label} header: {op.operation.value} {op.name}: {op.value}")
    refs = ", ".join(f"{r.name}{f'[{r.map_key}]' if r.map_key else ''}"
                     f"{' (absent)' if r.presence.value == 'ABSENT' else ''}" for r in decision.referenced)
    click.echo(f"referenced: {refs or '(none)'}")
    click.echo(f"cache:      {_cache_text(decision.valid_duration, decision.valid_use_count)}")


def _parse_quotas(items: tuple[str, ...]) -> dict[str, Any]:
    from policy.sdk import QuotaArgs

    quotas = {}
    for item in items:
        name, sep, amount = item.partition("=")
        try:
            value = int(amount) if sep else 1
        except ValueError:
            raise click.UsageError(f"--quota {item!r}: expected NAME=AMOUNT with a whole number") from None
        quotas[name] = QuotaArgs(name, value)
    return quotas


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="A YAML config file or directory.")
@_PATH_NORMALIZATION
@click.option("--attr", "attrs", multiple=True, metavar="NAME=VALUE",
              help="An attribute, parsed by its type (source.ip=10.0.0.1, request.headers[x-user]=alice, "
                   "request.headers=a:1,b:2). Repeat for several.")
@click.option("--quota", "quotas", multiple=True, metavar="NAME=AMOUNT", help="A quota to charge.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--no-autoload", is_flag=True, help="Load only built-in adapters.")
def check(config_path: Path, attrs: tuple[str, ...], quotas: tuple[str, ...], as_json: bool,
          no_autoload: bool, path_normalization: str) -> None:
    """Evaluate one request in-process and explain the decision.

    Exits 0 when allowed, 1 when denied, 2 on a config or usage error.
    """
    from policy.runtime.service import PolicyService
    from policy.sdk import ConfigError

    _setup_logging("warning")
    service = PolicyService(config_path, _host(no_autoload), watch_interval=0)
    try:
        attributes = parse_attribute_args(list(attrs), service.host.vocabulary)
    except ValueParseError as exc:
        raise click.UsageError(str(exc)) from None
    from policy.servers.paths import normalize_attributes

    attributes = normalize_attributes(attributes, path_normalization)
    quota_args = _parse_quotas(quotas)

    async def run() -> Any:
        await service.start()
        try:
            return await service.check(attributes, quota_args or None)
        finally:
            await service.stop()

    try:
        decision = asyncio.run(run())
    except ConfigError as exc:
        _fail_config(exc)
    if as_json:
        click.echo(json.dumps(_decision_json(decision), indent=2, default=str))
    else:
        _print_decision(decision)
    sys.exit(0 if decision.allowed else EXIT_DENIED)


# --- validate ------------------------------------------------------------------


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--build", is_flag=True,
              help="Also start every handler (opens files, connects to backends); failures are warnings.")
@click.option("--no-autoload", is_flag=True, help="Load only built-in adapters.")
def validate(path: Path, build: bool, no_autoload: bool) -> None:
    """Check a config offline: print every error (exit 2 when any) and warnings on stderr.

    Every handler is built as ``policy serve`` builds it (policies parsed, Rego compiled),
    so what serve would refuse, validate refuses; ``--build`` also starts the handlers.
    """
    from policy.config import parse_config
    from policy.sdk import ConfigError

    host = _host(no_autoload)
    try:
        model = parse_config(path, host)
        start_problems = asyncio.run(_build_offline(model, host, start=build))
    except ConfigError as exc:
        for warning in getattr(exc, "warnings", ()):
            click.echo(f"warning: {warning}", err=True)
        _fail_config(exc)
    for warning in model.warnings:
        click.echo(f"warning: {warning}", err=True)
    for problem in start_problems:
        click.echo(f"warning: {problem}", err=True)
    started = f"; started every handler, {len(start_problems)} start-up warning(s)" if build else ""
    click.echo(f"{path}: OK — {model.summary()}{started}")


class _WarningCollector(logging.Handler):
    """Keeps the text of WARNING+ records logged by handlers (``policy.adapter.*``) while they start."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep ``record``'s message, prefixed with the handler's name."""
        handler = record.name.removeprefix("policy.adapter").lstrip(".") or "?"
        self.lines.append(f"handler {handler}: {record.getMessage()}")


async def _build_offline(model: Any, host: Any, *, start: bool) -> list[str]:
    """Build ``model``'s handlers (raising ConfigError as serve would), optionally start them, close them.

    Returns what went wrong while starting (a start error, or a warning a handler logged such as an
    unreachable Redis or a missing list file): a backend that is down is not a config error.
    """
    from policy.config import build_snapshot
    from policy.sdk import ConfigError

    snapshot = build_snapshot(model, host)
    problems: list[str] = []
    collector = _WarningCollector()
    adapter_log = logging.getLogger("policy.adapter")
    try:
        if start:
            adapter_log.addHandler(collector)
            try:
                await snapshot.start()
            except ConfigError as exc:
                problems.extend(f"{issue}" for issue in exc.issues)
            finally:
                adapter_log.removeHandler(collector)
    finally:
        await snapshot.close()
    return problems + collector.lines


# --- adapters ------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--markdown", "as_markdown", is_flag=True, help="Print reference docs for every adapter's params.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --markdown: write one page per adapter and an index README.md into this directory.")
@click.option("--no-autoload", is_flag=True, help="Load only built-in adapters.")
def adapters(as_json: bool, as_markdown: bool, out_dir: Path | None, no_autoload: bool) -> None:
    """List installed adapters with their distribution, version and templates."""
    from policy.docs import adapter_markdown, write_adapter_pages

    host = _host(no_autoload)
    if out_dir is not None:
        if not as_markdown:
            raise click.UsageError("--out writes Markdown pages: give --markdown too")
        for path in write_adapter_pages(host, out_dir):
            click.echo(f"wrote {path}")
        return
    rows = [{"name": r.name, "distribution": r.origin.distribution, "version": r.origin.version,
             "plugin": r.origin.plugin, "templates": list(r.adapter.templates),
             "available": not getattr(r.adapter, "unavailable", ""),
             "description": r.adapter.description} for r in host.adapters]
    if as_markdown:
        click.echo(adapter_markdown(host))
        return
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max([len(r["name"]) for r in rows] + [7])
    dist_width = max([len(f"{r['distribution']} {r['version']}") for r in rows] + [12])
    click.echo(f"{'ADAPTER':<{width}}  {'DISTRIBUTION':<{dist_width}}  TEMPLATES")
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {(r['distribution'] + ' ' + r['version']).strip():<{dist_width}}"
                   f"  {', '.join(r['templates'])}")
        if r["description"]:
            click.echo(f"{'':<{width}}  {r['description']}")


# --- new-adapter -------------------------------------------------------------------


@main.command("new-adapter")
@click.argument("name")
@click.option("--kind", required=True, type=click.Choice(["check", "quota", "report"]),
              help="What the adapter answers: checks, quota allocations or reports.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the package (must not exist or be empty). [default: ./policy-adapter-NAME]")
def new_adapter(name: str, kind: str, directory: Path | None) -> None:
    """Generate a pip-installable adapter package NAME: adapter, tests, example config, README."""
    from policy.scaffold import Names, ScaffoldError, generate

    reserved = {r.name for r in _host(no_autoload=True).adapters}
    try:
        target = generate(name, kind, directory, reserved=reserved)
    except ScaffoldError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    names = Names(name, kind)
    click.echo(f"created {names.distribution} ({kind} adapter {name!r}) in {target}")
    click.echo("next:")
    click.echo(f"  cd {target}")
    click.echo("  pip install -e '.[test]'")
    click.echo(f"  policy adapters            # lists {name} ({names.distribution} 0.1.0)")
    click.echo("  pytest")


# --- bench -----------------------------------------------------------------------


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--attr", "attrs", multiple=True, metavar="NAME=VALUE")
@click.option("-n", "--requests", default=20000, show_default=True, help="Checks per measurement.")
def bench(config_path: Path, attrs: tuple[str, ...], requests: int) -> None:
    """Time in-process checks of one request on CONFIG: cached and uncached, µs per check."""
    from policy.runtime.service import PolicyService

    service = PolicyService(config_path, _host(), watch_interval=0)
    try:
        attributes = parse_attribute_args(list(attrs), service.host.vocabulary)
    except ValueParseError as exc:
        raise click.UsageError(str(exc)) from None

    async def run() -> tuple[list[float], list[float]]:
        from policy.attributes import AttributeBag

        await service.start()
        bag = AttributeBag(attributes)
        dispatcher = service.dispatcher
        cached, uncached = [], []
        deadline = time.monotonic() + 30
        for _ in range(requests):
            start = time.perf_counter()
            await dispatcher.check(bag)
            cached.append(time.perf_counter() - start)
            if dispatcher.cache is not None:
                dispatcher.cache.clear()
            start = time.perf_counter()
            await dispatcher.check(bag)
            uncached.append(time.perf_counter() - start)
            if time.monotonic() > deadline:
                break
        await service.stop()
        return cached, uncached

    cached, uncached = asyncio.run(run())
    for label, samples in (("cached", cached), ("uncached", uncached)):
        samples.sort()
        click.echo(f"{label:>9}: median {samples[len(samples) // 2] * 1e6:7.2f} µs,"
                   f" p99 {samples[int(len(samples) * 0.99)] * 1e6:7.2f} µs  ({len(samples)} checks)")


if __name__ == "__main__":
    main()

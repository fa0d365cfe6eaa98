"""Config: documents → validated model → compiled :class:`~policy.config.snapshot.Snapshot`.

Accepts the compact form (:mod:`policy.config.compact`) and Mixer's Kubernetes
documents (:mod:`policy.config.mixer`), mixed freely, from a file or a directory
(:mod:`policy.config.documents`). Every problem is collected into one
:class:`~policy.sdk.ConfigError` whose ``issues`` each name file, document and field::

    model = parse_config("/etc/policy", host)       # validate only (policy validate)
    snapshot = build_snapshot(model, host)          # build handlers
    snapshot = load_config("/etc/policy", host)     # both

References from rules resolve as Mixer resolved them: see :mod:`policy.config.references`.
"""

from __future__ import annotations

from pathlib import Path

from policy.config.compact import is_compact, parse_compact, parse_settings
from policy.config.compile import build_snapshot, close_handlers
from policy.config.enforcement import enforcement_warnings
from policy.config.documents import config_fingerprint, read_documents
from policy.config.mixer import MIXER_API_VERSION, parse_kubernetes
from policy.config.model import ConfigModel, ExtraDocument, ParseState, Settings
from policy.config.quota_specs import compile_quota_bindings
from policy.config.ratelimit.loading import attach_rate_limit, is_ratelimit_document, read_rate_limit
from policy.config.shape import Reporter, describe
from policy.config.validate import validate

from policy.config.catalog import Catalog
from policy.config.snapshot import Snapshot


def parse_config(path: str | Path, host: Catalog) -> ConfigModel:
    """Read and validate the config at ``path`` (a file or a directory) against ``host``'s plugins.

    Raises :class:`~policy.sdk.ConfigError` listing every error found (its
    ``warnings`` attribute holds the warnings); on success the warnings are in
    :attr:`ConfigModel.warnings`.
    """
    reporter = Reporter()
    documents, sources = read_documents(path, reporter)
    settings = parse_settings(documents, reporter, host.vocabulary)
    state = ParseState(reporter, settings)
    for doc in documents:
        if isinstance(doc.data, dict) and not doc.data:
            continue
        if is_ratelimit_document(doc.data):  # envoyproxy/ratelimit's format: read by policy.config.ratelimit below
            continue
        if is_compact(doc.data):
            parse_compact(doc, state)
        elif isinstance(doc.data, dict):
            parse_kubernetes(doc, state, host)
        else:
            reporter.error(doc.where, "expected a mapping (a compact config with settings/handlers/instances/"
                                      f"rules, or a Kubernetes document), got {describe(doc.data)}")
    # QuotaSpec / QuotaSpecBinding are read here so their errors join everyone else's.
    quota_bindings = compile_quota_bindings(state.extras, host.vocabulary, reporter, state.root)
    rate_limit = read_rate_limit(documents, state, host)
    model = validate(state, host, sources)
    attach_rate_limit(model, rate_limit)
    model.quota_bindings = quota_bindings
    model.warnings.extend(enforcement_warnings(model, host))
    return model


def load_config(path: str | Path, host: Catalog, *, generation: int = 1,
                previous: Snapshot | None = None) -> Snapshot:
    """Read, validate and build the config at ``path``: :func:`parse_config` then :func:`build_snapshot`.

    ``previous``: the snapshot in force, whose unchanged quota handlers (and their counters) are kept.
    """
    model = parse_config(path, host)
    old_rate_limit = getattr(previous, "rate_limit", None)
    if model.rate_limit is not None and old_rate_limit is not None:
        model.rate_limit.statistics.carry_from(old_rate_limit.statistics)
    return build_snapshot(model, host, generation=generation, previous=previous)


__all__ = [
    "MIXER_API_VERSION",
    "ConfigModel",
    "ExtraDocument",
    "Settings",
    "build_snapshot",
    "close_handlers",
    "config_fingerprint",
    "load_config",
    "parse_config",
]

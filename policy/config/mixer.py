"""Mixer's Kubernetes documents (``apiVersion: config.istio.io/v1alpha2``).

Kinds read, as Mixer's runtime config did (``mixer/pkg/runtime/config/ephemeral.go``):

* ``handler``: ``spec.compiledAdapter`` (or ``spec.adapter``) and ``spec.params``;
* ``instance``: ``spec.compiledTemplate`` (or ``spec.template``) and ``spec.params``;
* ``rule``: ``spec.match``, ``spec.actions``, ``spec.requestHeaderOperations``,
  ``spec.responseHeaderOperations`` (``spec.sampling`` is ignored with a warning);
* the legacy per-adapter kinds (``kind: listchecker``: ``spec`` is the params) and
  per-template kinds (``kind: listentry``: ``spec`` is the instance params). When an
  adapter and a template share a name the adapter wins, as in Mixer's ``KindMap``.

``metadata.namespace`` defaults to the root namespace. Any other document (other
apiVersions such as ``security.istio.io``, or Mixer kinds this service does not
interpret: ``attributemanifest`` ...) is kept for plugins in
:attr:`ConfigModel.extra_documents`, with one warning per kind no adapter claims
(an adapter claims kinds by listing them in an optional ``document_kinds`` attribute).
``QuotaSpec`` and ``QuotaSpecBinding`` are kept too, and read by :mod:`policy.config.quota_specs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy.config.documents import Document
from policy.config.model import MIXER, ExtraDocument, HandlerSpec, InstanceSpec, ParseState
from policy.config.references import HANDLER_KIND, INSTANCE_KIND, RULE_KIND
from policy.config.rulebody import BODY_KEYS, parse_rule_body
from policy.config.shape import Where, mapping, name_text

from policy.config.catalog import Catalog

MIXER_API_VERSION = "config.istio.io/v1alpha2"
OBJECT_KEYS = ("apiVersion", "kind", "metadata", "spec", "status")
#: Kubernetes ObjectMeta fields: a dump from ``kubectl get -o yaml`` carries them.
METADATA_KEYS = (
    "name", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generateName",
    "selfLink", "ownerReferences", "finalizers", "managedFields", "clusterName",
)
HANDLER_SPEC_KEYS = ("compiledAdapter", "adapter", "params", "connection")
INSTANCE_SPEC_KEYS = ("compiledTemplate", "template", "params", "attributeBindings")
RULE_SPEC_KEYS = (*BODY_KEYS, "sampling")


#: Mixer kinds kept as extra documents that the config reads itself (policy.config.quota_specs).
_READ_ELSEWHERE = frozenset({"QuotaSpec", "QuotaSpecBinding"})
#: Mixer kinds this service does not interpret, and why.
_NOT_READ = {
    "attributemanifest": "the attribute vocabulary comes from plugins (the policy_attributes hook)",
    "adapter": "out-of-process adapters are not supported; adapters are installed as plugins",
    "template": "dynamic templates are not supported; plugins register templates",
}


def parse_kubernetes(doc: Document, state: ParseState, host: Catalog) -> None:
    """Collect one Kubernetes-style document into ``state`` (policy config or an extra document)."""
    reporter = state.reporter
    data = doc.data
    where = doc.where
    kind, api = data.get("kind"), data.get("apiVersion")
    if not isinstance(api, str) or not api:
        reporter.error(where.at("apiVersion"), f"apiVersion is required (a string), got {api!r}")
        return
    if not isinstance(kind, str) or not kind:
        reporter.error(where.at("kind"), f"kind is required (a string), got {kind!r}")
        return
    if api == MIXER_API_VERSION:
        if kind in (HANDLER_KIND, INSTANCE_KIND, RULE_KIND) or kind in host.adapters or kind in host.templates:
            _policy_document(doc, kind, state, host)
            return
    _extra(doc, kind, api, state, host)


def _policy_document(doc: Document, kind: str, state: ParseState, host: Catalog) -> None:
    reporter = state.reporter
    where = _label(doc, kind, state.root)
    before = len(reporter.errors)
    mapping(doc.data, where, reporter, OBJECT_KEYS)
    meta = mapping(doc.data.get("metadata"), where.at("metadata"), reporter, METADATA_KEYS, optional=False)
    if meta is None:
        return
    name = name_text(meta.get("name"), where.at("metadata", "name"), reporter)
    namespace = name_text(meta.get("namespace"), where.at("metadata", "namespace"), reporter,
                          what="a namespace", required=False, dots=False) or state.root
    if name is None:
        return
    spec_at = where.at("spec")
    raw_spec = doc.data.get("spec")
    if kind == HANDLER_KIND:
        spec = mapping(raw_spec, spec_at, reporter, HANDLER_SPEC_KEYS)
        if spec is None:
            return
        if spec.get("connection") is not None:
            reporter.error(spec_at.at("connection"), "out-of-process adapters (connection) are not supported;"
                                                     " install the adapter as a plugin")
        adapter, adapter_at = _one_of(spec, "compiledAdapter", "adapter", spec_at, state, "an adapter name")
        state.handlers.append(HandlerSpec(
            name=name, namespace=namespace, kind=kind, form=MIXER, adapter_name=adapter or "",
            raw_params=spec.get("params"), where=where, adapter_at=adapter_at,
            params_at=spec_at.at("params"), valid=len(reporter.errors) == before,
        ))
    elif kind == INSTANCE_KIND:
        spec = mapping(raw_spec, spec_at, reporter, INSTANCE_SPEC_KEYS)
        if spec is None:
            return
        if spec.get("attributeBindings"):
            reporter.error(spec_at.at("attributeBindings"),
                           "attribute bindings (attribute-generating adapters) are not supported")
        template, template_at = _one_of(spec, "compiledTemplate", "template", spec_at, state, "a template name")
        state.instances.append(InstanceSpec(
            name=name, namespace=namespace, kind=kind, form=MIXER, template_name=template or "",
            raw_params=spec.get("params"), where=where, template_at=template_at,
            params_at=spec_at.at("params"), valid=len(reporter.errors) == before,
        ))
    elif kind == RULE_KIND:
        spec = mapping(raw_spec, spec_at, reporter, RULE_SPEC_KEYS)
        if spec is None:
            return
        if spec.get("sampling") is not None:
            reporter.warn(spec_at.at("sampling"), "sampling is not supported and is ignored:"
                                                  " the rule applies to every matching request")
        rule = parse_rule_body(spec, spec_at, state, name=name, namespace=namespace, form=MIXER, where=where)
        rule.valid = len(reporter.errors) == before
        state.rules.append(rule)
    elif kind in host.adapters:
        state.handlers.append(HandlerSpec(
            name=name, namespace=namespace, kind=kind, form=MIXER, adapter_name=kind,
            raw_params=raw_spec, where=where, adapter_at=where.at("kind"), params_at=spec_at,
            valid=len(reporter.errors) == before,
        ))
    else:
        state.instances.append(InstanceSpec(
            name=name, namespace=namespace, kind=kind, form=MIXER, template_name=kind,
            raw_params=raw_spec, where=where, template_at=where.at("kind"), params_at=spec_at,
            valid=len(reporter.errors) == before,
        ))


def _label(doc: Document, kind: str, root: str) -> Where:
    """``kind/name.namespace`` when the metadata names the document, else the document's position."""
    meta = doc.data.get("metadata")
    if not isinstance(meta, Mapping):
        return doc.where
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not name:
        return doc.where
    namespace = namespace if isinstance(namespace, str) and namespace else root
    return doc.where.relabel(f"{kind}/{name}.{namespace}")


def _one_of(spec: dict[str, Any], compiled: str, dynamic: str, at: Where, state: ParseState,
            what: str) -> tuple[str | None, Where]:
    """Read ``spec.compiledX`` or ``spec.X``: exactly one of them must be given."""
    if spec.get(compiled) is not None and spec.get(dynamic) is not None:
        state.reporter.error(at.at(dynamic), f"give {compiled} or {dynamic}, not both")
        return None, at.at(compiled)
    key = dynamic if spec.get(compiled) is None and spec.get(dynamic) is not None else compiled
    if spec.get(key) is None:
        state.reporter.error(at.at(compiled), f"{what} is required ({compiled} or {dynamic})")
        return None, at.at(compiled)
    return name_text(spec.get(key), at.at(key), state.reporter, what=what), at.at(key)


def _extra(doc: Document, kind: str, api: str, state: ParseState, host: Catalog) -> None:
    meta = doc.data.get("metadata")
    label = f"{kind}"
    if isinstance(meta, dict) and meta.get("name"):
        label += f"/{meta['name']}" + (f".{meta['namespace']}" if meta.get("namespace") else "")
    where = doc.where.relabel(label)
    state.extras.append(ExtraDocument(doc.file, label, dict(doc.data)))
    if kind in state.unclaimed_kinds or kind in _claimed_kinds(host):
        return
    if api == MIXER_API_VERSION and kind in _READ_ELSEWHERE:
        return
    state.unclaimed_kinds.add(kind)
    if api == MIXER_API_VERSION and kind in _NOT_READ:
        message = f"kind {kind!r} is not read: {_NOT_READ[kind]}; documents of this kind are ignored"
    elif api == MIXER_API_VERSION:
        known = ", ".join(r.name for r in host.adapters) or "none"
        message = (f"kind {kind!r} is neither an installed adapter (adapters: {known}) or template nor a"
                   " Mixer kind this service reads; documents of this kind are ignored")
    else:
        message = (f"kind {kind!r} ({api}) is not policy config and no installed adapter reads it;"
                   " documents of this kind are ignored")
    state.reporter.warn(where, message)


def _claimed_kinds(host: Catalog) -> set[str]:
    kinds: set[str] = set()
    for registered in host.adapters:
        kinds.update(registered.adapter.document_kinds)
    return kinds


__all__ = ["MIXER_API_VERSION", "parse_kubernetes"]

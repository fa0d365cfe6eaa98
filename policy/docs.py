"""Reference docs generated from the adapters' own declarations (``policy adapters --markdown``)."""

from __future__ import annotations

import datetime as _dt
import enum
from typing import Any

from policy.sdk import describe_params


def _default_text(row: dict[str, Any]) -> str:
    if row["required"]:
        return "required"
    value = row["default"]
    if isinstance(value, enum.Enum):
        return f"`{value.name}`"
    if isinstance(value, _dt.timedelta):
        return f"`{value.total_seconds():g}s`"
    if value in (None, [], {}, ""):
        return "—"
    return f"`{value}`"


def adapter_markdown(host: Any) -> str:
    """Markdown for every registered adapter: description, templates, params table, module docs."""
    import inspect

    parts = ["# Adapters\n"]
    for registered in host.adapters:
        adapter = registered.adapter
        parts.append(f"## {adapter.name}\n")
        parts.append(f"{adapter.description}\n")
        origin = registered.origin
        parts.append(f"- Distribution: {origin.distribution or '(none)'} {origin.version}".rstrip())
        parts.append(f"- Templates: {', '.join(f'`{t}`' for t in adapter.templates)}\n")
        rows = describe_params(adapter.Params)
        if rows:
            parts.append("| param | type | default | meaning |")
            parts.append("|---|---|---|---|")
            for row in rows:
                doc = " ".join(row["doc"].split())
                parts.append(f"| `{row['name']}` | {row['type']} | {_default_text(row)} | {doc} |")
            parts.append("")
        else:
            parts.append("No params.\n")
        module = inspect.getmodule(adapter)
        if module is not None and module.__doc__:
            parts.append(inspect.cleandoc(module.__doc__) + "\n")
    return "\n".join(parts)

"""``policy new-adapter``: generate a pip-installable adapter package from templates.

The templates live beside this module (``templates/common`` for every kind,
``templates/<kind>`` for the adapter, its tests and its example config) and are
filled with :class:`string.Template` (``${name}``, ``${package}``, ...).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path

KINDS = ("check", "quota", "report")
TEMPLATES = Path(__file__).parent / "templates"

#: Generated file → template, relative to the package directory / ``templates``.
COMMON_FILES = {
    "setup.cfg": "common/setup.cfg.tmpl",
    "pyproject.toml": "common/pyproject.toml.tmpl",
    "README.md": "common/README.md.tmpl",
    "tests/conftest.py": "common/conftest.py.tmpl",
}
KIND_FILES = {
    "{package}/__init__.py": "{kind}/adapter.py.tmpl",
    "tests/test_adapter.py": "{kind}/test_adapter.py.tmpl",
    "example/policy.yaml": "{kind}/policy.yaml.tmpl",
}

_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


class ScaffoldError(ValueError):
    """The name, kind or target directory cannot be used (the message says why)."""


@dataclass(frozen=True)
class Names:
    """The names a package is generated with, derived from the adapter's name."""

    name: str
    kind: str

    @property
    def package(self) -> str:
        """The Python package: ``policy_adapter_<name with underscores>``."""
        return "policy_adapter_" + self.name.replace("-", "_")

    @property
    def distribution(self) -> str:
        """The distribution (pip) name: ``policy-adapter-<name>``."""
        return f"policy-adapter-{self.name}"

    @property
    def classname(self) -> str:
        """The adapter class: ``<CamelName>Adapter``."""
        return "".join(part.capitalize() for part in self.name.split("-")) + "Adapter"

    @property
    def paramsname(self) -> str:
        """The params dataclass: ``<CamelName>Params`` (not ``Params``, which the class attribute is)."""
        return self.classname.removesuffix("Adapter") + "Params"

    def substitutions(self) -> dict[str, str]:
        """What ``${...}`` in the templates stands for."""
        return {"name": self.name, "kind": self.kind, "package": self.package,
                "distribution": self.distribution, "classname": self.classname,
                "paramsname": self.paramsname}


def check_name(name: str, reserved: set[str] | frozenset[str] = frozenset()) -> None:
    """Raise ScaffoldError unless ``name`` is a lowercase, dash-separated name not already taken."""
    if not _NAME.fullmatch(name):
        raise ScaffoldError(f"adapter name {name!r}: use lowercase letters, digits and single dashes,"
                            " starting with a letter (e.g. 'team-allowlist')")
    if name in reserved:
        raise ScaffoldError(f"adapter name {name!r} is already taken by an installed adapter")


def render(template: str, names: Names) -> str:
    """Fill one template file (path relative to ``templates``)."""
    return string.Template((TEMPLATES / template).read_text()).substitute(names.substitutions())


def generate(name: str, kind: str, directory: str | Path | None = None, *,
             reserved: set[str] | frozenset[str] = frozenset()) -> Path:
    """Write a new adapter package; returns its directory.

    :param name: the adapter's name (as config refers to it).
    :param kind: ``check``, ``quota`` or ``report``.
    :param directory: where to write (default ``./policy-adapter-<name>``); must not exist
        or be empty.
    :param reserved: names that may not be used (the installed adapters).
    """
    if kind not in KINDS:
        raise ScaffoldError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    check_name(name, reserved)
    names = Names(name, kind)
    target = Path(directory) if directory is not None else Path.cwd() / names.distribution
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not an empty directory")
    files = dict(COMMON_FILES)
    files.update({out.format(package=names.package): tmpl.format(kind=kind) for out, tmpl in KIND_FILES.items()})
    rendered = {out: render(tmpl, names) for out, tmpl in files.items()}
    for out, text in rendered.items():
        path = target / out
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return target


__all__ = ["KINDS", "Names", "ScaffoldError", "check_name", "generate", "render"]

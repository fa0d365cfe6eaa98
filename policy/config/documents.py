"""Reading config files: which files a path names, their YAML documents, and a cheap fingerprint.

A path is a file or a directory. A directory contributes every ``*.yaml``,
``*.yml`` and ``*.json`` file in it and in its sub-directories, sorted, skipping
hidden entries. That matters for a Kubernetes ConfigMap mount, which looks like::

    /etc/policy/policy.yaml -> ..data/policy.yaml
    /etc/policy/..data -> ..2024_05_01_10_00_00.123
    /etc/policy/..2024_05_01_10_00_00.123/policy.yaml

Only the top-level link is read (through the symlink), so each file is read once,
and an update (the kubelet swaps ``..data``) changes the fingerprint because the
link now resolves to another file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from policy.config.shape import Reporter, Where

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Document:
    """One non-empty YAML document of a config file.

    :param index: the document's position in its file (0-based, empty ones counted).
    :param line: the 1-based line it starts on.
    :param item: for an entry of a ``kind: List`` document, its index in ``items``.
    """

    file: str
    index: int
    line: int
    data: Any
    item: int | None = None

    @property
    def label(self) -> str:
        """A label for messages about a document that has no name (yet)."""
        text = f"document[{self.index}]"
        if self.item is not None:
            text += f".items[{self.item}]"
        return f"{text} (line {self.line})"

    @property
    def where(self) -> Where:
        """The document as a place for messages."""
        return Where(self.file, self.label)


def config_files(path: str | Path) -> list[Path]:
    """The config files ``path`` names: itself, or the config files under a directory.

    Files are returned as found (not resolved), sorted by path, each real file once.
    Raises FileNotFoundError when ``path`` does not exist.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no such file or directory: {root}")
    if not root.is_dir():
        return [root]
    found: list[Path] = []
    seen: set[Path] = set()
    for candidate in _walk(root, set()):
        real = candidate.resolve()
        if real not in seen:
            seen.add(real)
            found.append(candidate)
    return found


def _walk(directory: Path, visiting: set[Path]) -> Iterator[Path]:
    real = directory.resolve()
    if real in visiting:  # a symlink loop
        return
    visiting = visiting | {real}
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _walk(entry, visiting)
        elif entry.suffix.lower() in CONFIG_SUFFIXES and entry.is_file():
            yield entry


def config_fingerprint(path: str | Path) -> tuple[tuple[str, int | None, int | None], ...]:
    """A cheap fingerprint of a config: (resolved path, mtime_ns, size) of every config file.

    It changes when a file is added, removed, edited or (for a ConfigMap) relinked.
    A missing path gives ``((path, None, None),)``; never raises for I/O problems.
    """
    try:
        files = config_files(path)
    except OSError:
        return ((str(path), None, None),)
    out: list[tuple[str, int | None, int | None]] = []
    for file in files:
        try:
            real = file.resolve()
            stat = real.stat()
            out.append((str(real), stat.st_mtime_ns, stat.st_size))
        except OSError:
            out.append((str(file), None, None))
    return tuple(out)


def read_documents(path: str | Path, reporter: Reporter) -> tuple[list[Document], list[str]]:
    """Read every document of the config at ``path``; return them and the files read.

    Problems (missing path, unreadable file, YAML syntax error) are reported, not
    raised; a file with a syntax error keeps the documents before the error.
    ``kind: List`` documents are unwrapped into their items.
    """
    try:
        files = config_files(path)
    except OSError as exc:
        reporter.error(Where(str(path), ""), str(exc))
        return [], []
    documents: list[Document] = []
    for file in files:
        documents.extend(_read_file(file, reporter))
    return documents, [str(f) for f in files]


def _read_file(file: Path, reporter: Reporter) -> list[Document]:
    name = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reporter.error(Where(name, ""), f"cannot read file: {exc}")
        return []
    out: list[Document] = []
    loader = _LOADER(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            line = node.start_mark.line + 1 if node is not None else 1
            data = loader.construct_document(node) if node is not None else None
            if data is not None:
                out.extend(_unwrap(Document(name, index, line, data), reporter))
            index += 1
    except yaml.YAMLError as exc:
        reporter.error(Where(name, _yaml_location(exc)), f"YAML syntax error: {_yaml_problem(exc)}")
    finally:
        loader.dispose()
    return out


#: libyaml's loader when PyYAML was built with it (10x faster; same nodes, marks and errors).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _unwrap(document: Document, reporter: Reporter) -> list[Document]:
    data = document.data
    if not (isinstance(data, dict) and data.get("kind") == "List" and "items" in data):
        return [document]
    items = data["items"]
    if not isinstance(items, list):
        reporter.error(document.where.at("items"), "expected a list of documents")
        return []
    return [Document(document.file, document.index, document.line, item, i)
            for i, item in enumerate(items) if item is not None]


def _yaml_location(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is None:
        return ""
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    mark = getattr(exc, "problem_mark", None)
    if problem is None:
        return str(exc).replace(os.linesep, " ")
    text = f"{context}, {problem}" if context else problem
    if mark is not None:
        text += f" (line {mark.line + 1}, column {mark.column + 1})"
    return text


__all__ = ["CONFIG_SUFFIXES", "Document", "config_files", "config_fingerprint", "read_documents"]

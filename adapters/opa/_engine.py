"""The embedded engine: Rego compiled and evaluated in-process with ``regopy`` (rego-cpp).

A :class:`Compiled` policy is an interpreter holding the modules and the merged data,
with a bundle built for exactly one entry point, the decision path. Querying the entry
point keeps a ``false`` decision ``false`` (a bare query of a rule whose value is false
answers "undefined" in regopy), and runs the compiled plan instead of recompiling the
query (~20 µs instead of ~500 µs).

The input is handed to the engine by :func:`to_native`, which builds rego-cpp's input
value with direct calls to its C API (regopy's ``Input`` does the same through a
Python wrapper per value, twice as slow).

:class:`PolicySource` knows where modules and data come from (inline texts, files,
a bundle directory), fingerprints the files, and compiles; a failed compile raises
:class:`CompileError` whose message names the file and line.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from regopy import Input, Interpreter, LogLevel, RegoError
from regopy import rego_shared as _c

from adapters.opa._builtins import canonical_literals, engine_string, unknown_calls
from adapters.opa._reach import policy_reach
from adapters.opa._syntax import v1_issues

_lib = _c.rego
# rego-cpp's C input builders: each returns a status code, non-zero on failure.
_STR: Callable[[Any, bytes], int] = _lib.regoInputString
_OBJ: Callable[[Any, int], int] = _lib.regoInputObject
_ITEM: Callable[[Any], int] = _lib.regoInputObjectItem
_ARR: Callable[[Any, int], int] = _lib.regoInputArray
_INT: Callable[[Any, int], int] = _lib.regoInputInt
_FLOAT: Callable[[Any, float], int] = _lib.regoInputFloat
_BOOL: Callable[[Any, bool], int] = _lib.regoInputBoolean
_NULL: Callable[[Any], int] = _lib.regoInputNull
_SET: Callable[[Any, int], int] = _lib.regoInputSet


class CompileError(ValueError):
    """Policies or data that do not load; the message says which file and why."""


class EvalError(RuntimeError):
    """Evaluation failed inside the engine (a conflict, an unknown function ...)."""


def _add(p: Any, value: Any) -> int:
    t = type(value)
    if t is str:
        return _STR(p, engine_string(value).encode())
    if t is dict:
        bad = 0
        for k, v in value.items():
            bad |= _STR(p, engine_string(str(k)).encode()) | _add(p, v) | _ITEM(p)
        return bad | _OBJ(p, len(value))
    if t is list or t is tuple:
        bad = 0
        for v in value:
            bad |= _add(p, v)
        return bad | _ARR(p, len(value))
    if t is bool:
        return _BOOL(p, value)
    if t is int:
        return _INT(p, value)
    if t is float:
        return _FLOAT(p, value)
    if value is None:
        return _NULL(p)
    if isinstance(value, Mapping):
        return _add(p, dict(value))
    if isinstance(value, (set, frozenset)):
        bad = 0
        for v in value:
            bad |= _add(p, v)
        return bad | _SET(p, len(value))
    return _STR(p, engine_string(str(value)).encode())


class NativeInput(Input):  # type: ignore[misc]  # regopy is untyped
    """A rego-cpp input value built by :func:`_add` (regopy's ``Input``, which frees it, built faster)."""

    def __init__(self, value: Any) -> None:  # noqa: D107 - regopy.Input's constructor, replaced
        self._impl = _c.rego_new_input()
        if _add(self._impl, value):
            raise EvalError("the input document could not be converted for the engine")


def take_output(out: Any) -> tuple[bool, str]:
    """An engine output's (ok, text), freeing the output: rego-cpp hands its ownership to the caller."""
    try:
        return _c.rego_output_ok(out), _c.rego_output_string(out)
    finally:
        _c.rego_free_output(out)


def to_native(value: Any) -> NativeInput:
    """Build the engine's input value for a JSON-like Python value."""
    return NativeInput(value)


_ERROR = re.compile(r"\(error (\d+):")


def _take(text: str, start: int) -> tuple[str, int]:
    """Read a length-prefixed ``<n>:<text>`` at ``start``; return (text, end)."""
    colon = text.index(":", start)
    n = int(text[start:colon])
    return text[colon + 1: colon + 1 + n], colon + 1 + n


def describe_error(raw: str, sources: Mapping[str, str]) -> str:
    """rego-cpp's error tree (``(rego-errorseq (error …) …)``) as ``file:line:col: message`` lines."""
    lines = []
    for m in _ERROR.finditer(raw):
        try:
            file, end = _take(raw, m.start(1))
            offset_text = raw[end:].split(")", 1)[0].split("\n", 1)[0]
            parts = offset_text.strip("|").split("|")
            offset = int(parts[0]) if parts and parts[0].isdigit() else 0
            msg_at = raw.index("(errormsg ", end) + len("(errormsg ")
            message, _ = _take(raw, msg_at)
        except (ValueError, IndexError):
            continue
        source = sources.get(file, "")
        line = source.count("\n", 0, offset) + 1
        column = offset - (source.rfind("\n", 0, offset) + 1) + 1
        lines.append(f"{file}:{line}:{column}: {message}")
    if not lines:
        at = 0
        while (at := raw.find("(errormsg ", at)) >= 0:
            try:
                message, at = _take(raw, at + len("(errormsg "))
            except (ValueError, IndexError):
                break
            lines.append(message)
    return "; ".join(lines) or raw.strip()[:300]


def merge_data(target: dict[str, Any], path: list[str], value: Any, origin: str) -> None:
    """Deep-merge ``value`` at ``path`` into ``target``; conflicting leaves are a CompileError."""
    node = target
    for key in path:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise CompileError(f"{origin}: data path {'/'.join(path)} conflicts with a non-object value")
        node = child
    if not isinstance(value, dict):
        if path:
            raise CompileError(f"{origin}: data at {'/'.join(path)} must be an object")
        raise CompileError(f"{origin}: a data document must be an object")
    for key, item in value.items():
        if key in node and isinstance(node[key], dict) and isinstance(item, dict):
            merge_data(node, [key], item, origin)
        elif key in node and node[key] != item:
            raise CompileError(f"{origin}: data key {'/'.join([*path, key])} is defined twice")
        else:
            node[key] = item


@dataclass
class Compiled:
    """A loaded policy: the interpreter and the bundle built for the decision entry point."""

    interpreter: Interpreter
    bundle: Any
    entrypoint: str
    modules: tuple[str, ...]
    #: The input paths the policy can reach (None: the whole document), see :mod:`adapters.opa._reach`.
    input_reach: frozenset[tuple[str, ...]] | None = None

    def evaluate(self, native_input: NativeInput) -> tuple[bool, Any]:
        """Evaluate the decision; (defined, value). Raise EvalError for an engine error."""
        interp = self.interpreter
        _c.rego_set_input(interp._impl, native_input._impl)
        ok, text = take_output(_c.rego_bundle_query_entrypoint(interp._impl, self.bundle._impl, self.entrypoint))
        if not ok:
            detail = text.strip()[:300]
            raise EvalError("evaluation failed" + (f": {detail}" if detail and detail != "<error>" else
                                                   " (an error in a built-in call, a conflict, ...)"))
        if text == "undefined":
            return False, None
        try:
            parsed = json.loads(text)
        except ValueError:
            raise EvalError(describe_error(text, {})) from None
        results = parsed if isinstance(parsed, list) else [parsed]
        if not results or not results[0].get("expressions"):
            return False, None
        return True, results[0]["expressions"][0]


def _walk(directory: Path, suffixes: tuple[str, ...]) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name.endswith(suffixes):
                found.append(Path(root) / name)
    return found


@dataclass
class PolicySource:
    """Where a handler's modules and data come from.

    :param inline: module texts given in params (named ``inline-<i>.rego``).
    :param files: ``.rego`` files or directories of them.
    :param data_files: JSON or YAML data documents, merged at the root of ``data``.
    :param bundle_dir: an OPA bundle directory: ``.rego`` files anywhere, and
        ``data.json`` / ``data.yaml`` files placed at their directory's path.
    :param rego_v1: reject Rego v0 syntax as OPA 1.x does.
    """

    inline: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    data_files: list[Path] = field(default_factory=list)
    bundle_dir: Path | None = None
    rego_v1: bool = True

    def paths(self) -> list[Path]:
        """Every file the policy is made of, now."""
        out: list[Path] = []
        for path in self.files:
            out.extend(_walk(path, (".rego",)) if path.is_dir() else [path])
        out.extend(self.data_files)
        if self.bundle_dir is not None:
            out.extend(p for p in _walk(self.bundle_dir, (".rego", "data.json", "data.yaml", "data.yml"))
                       if not p.name.endswith("_test.rego"))
        return out

    def fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        """(path, mtime_ns, size) of every file; changes when one is added, removed or edited."""
        out = []
        for path in self.paths():
            try:
                stat = path.stat()
                out.append((str(path), stat.st_mtime_ns, stat.st_size))
            except OSError:
                out.append((str(path), -1, -1))
        return tuple(out)

    def _modules(self) -> list[tuple[str, str]]:
        modules = [(f"inline-{i}.rego", text) for i, text in enumerate(self.inline)]
        for path in self.paths():
            if path.suffix == ".rego":
                try:
                    modules.append((str(path), path.read_text(encoding="utf-8")))
                except (OSError, UnicodeDecodeError) as exc:
                    raise CompileError(f"{path}: cannot read: {exc}") from None
        return modules

    def _data(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for path in self.data_files:
            merge_data(data, [], _load_data(path), str(path))
        if self.bundle_dir is not None:
            for path in self.paths():
                if path.name.startswith("data.") and path.suffix in (".json", ".yaml", ".yml"):
                    relative = path.parent.relative_to(self.bundle_dir).parts
                    merge_data(data, list(relative), _load_data(path), str(path))
        return data

    def compile(self, entrypoint: str) -> Compiled:
        """Load every module and the data, check v1 syntax, build the entry point's bundle."""
        modules = self._modules()
        if not modules:
            raise CompileError("no policy modules (give policies, policyFiles or bundleDir)")
        if self.rego_v1:
            problems = [f"{name}:{i.line}:{i.column}: {i.message}" for name, text in modules for i in v1_issues(text)]
            if problems:
                raise CompileError("; ".join(problems) + " (Rego v1 is required, as by OPA 1.x;"
                                                         " set regoVersion: v0 for v0 policies)")
        interpreter = Interpreter()
        interpreter.log_level = LogLevel.NONE
        interpreter.strict_built_in_errors = True  # a built-in's error is an error, never "undefined"
        unknown = unknown_calls(modules, interpreter.is_builtin)
        if unknown:
            raise CompileError("; ".join(map(str, unknown)) + " (evaluating it would give undefined where OPA"
                                                               " gives a value or an error: use a remote OPA"
                                                               " server (url) for this policy)")
        reach = policy_reach(modules)
        modules = [(name, canonical_literals(text)) for name, text in modules]
        sources = dict(modules)
        try:
            for name, text in modules:
                interpreter.add_module(name, text)
            data = self._data()
            if data:
                interpreter.add_data_json(json.dumps(data, ensure_ascii=False))
            bundle = interpreter.build(None, [entrypoint])
        except RegoError as exc:
            raise CompileError(describe_error(str(exc), sources)) from None
        if not bundle.ok():
            raise CompileError(f"the policy did not compile for entry point {entrypoint}")
        return Compiled(interpreter, bundle, entrypoint, tuple(n for n, _ in modules), reach)


def _load_data(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise CompileError(f"{path}: cannot load data: {exc}") from None


__all__ = ["CompileError", "Compiled", "EvalError", "NativeInput", "PolicySource", "describe_error",
           "merge_data", "to_native"]

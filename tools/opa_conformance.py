"""OPA's own conformance suite run against the embedded Rego engine, pass rate per builtin family.

The cases are OPA's ``v1/test/cases/testdata/v1`` YAML cases (open-policy-agent/opa), as
open-policy-agent/swift-opa exports them to JSON
(``ComplianceSuite/Tests/RegoComplianceTests/TestData/v1/<family>/<file>.json``). They are
vendored in ``tests/opa/conformance/cases.jsonl`` (one case a line, the IR plans dropped,
each with its source file) by::

    python -m tools.opa_conformance vendor <swift-opa checkout>/ComplianceSuite/Tests/RegoComplianceTests/TestData

and measured by::

    python -m tools.opa_conformance run [--json summary.json] [--family strings]

Each case is evaluated the way the opa adapter evaluates policies: modules with string
literals in the engine's one spelling, strict built-in errors, a call of a function the
engine lacks refused at load (counted as *refused*, never evaluated), input and data handed
over by the adapter's converters. A case passes when the engine gives OPA's result set
(bindings compared as JSON; rows in any order; with ``sort_bindings`` array values sorted)
or, when OPA errs (``want_error``/``want_error_code``), when the engine errs too (the error
text is not compared). The cases run in a child process with a time limit (then one per family
if it crashes or hangs), so a crash or hang of the engine counts against its family
instead of stopping the run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "opa" / "conformance" / "cases.jsonl"
SOURCE = "open-policy-agent/swift-opa ComplianceSuite/Tests/RegoComplianceTests/TestData/v1"
FAMILY_SECONDS = 120.0
KEEP = ("note", "query", "modules", "data", "input", "input_term", "want_result", "want_error",
        "want_error_code", "sort_bindings", "strict_error")


def vendor(test_data: Path, out: Path = CASES) -> int:
    """Write the suite's cases (without plans) to ``out``; returns how many."""
    count = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as sink:
        for path in sorted((test_data / "v1").glob("*/*.json")):
            document = json.loads(path.read_text(encoding="utf-8"))
            for case in document["cases"]:
                if case.get("ignore"):
                    continue
                kept = {k: case[k] for k in KEEP if k in case}
                kept["family"] = path.parent.name
                kept["source"] = f"{path.parent.name}/{path.name}"
                sink.write(json.dumps(kept, ensure_ascii=False, sort_keys=True) + "\n")
                count += 1
    return count


def load_cases(family: str | None = None) -> list[dict[str, Any]]:
    """The vendored cases (of one family when given)."""
    cases = [json.loads(line) for line in CASES.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [c for c in cases if family is None or c["family"] == family]


def _normal(value: Any, sort_arrays: bool = False) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_normal(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True)) if sort_arrays else items
    return value


def _rows(rows: list[dict[str, Any]], sort_bindings: bool) -> list[str]:
    out = []
    for row in rows:
        bindings = {k: _normal(v, sort_bindings) for k, v in row.items() if not k.startswith("__")}
        out.append(json.dumps(bindings, sort_keys=True))
    return sorted(out)


def evaluate(case: dict[str, Any]) -> tuple[str, str]:
    """Run one case: ("pass" | "fail" | "refused", detail).

    Built-in errors are strict when the case says so (``strict_error``), as OPA's runner does;
    the adapter itself always runs strict (an error is never "undefined").
    """
    from regopy import Interpreter, LogLevel
    from regopy import rego_shared as c

    from adapters.opa._builtins import canonical_literals, unknown_calls
    from adapters.opa._engine import take_output, to_native

    modules = [(f"module-{i}.rego", text) for i, text in enumerate(case.get("modules") or [])]
    wants_error = "want_error" in case or "want_error_code" in case
    interpreter = Interpreter()
    interpreter.log_level = LogLevel.NONE
    interpreter.strict_built_in_errors = bool(case.get("strict_error"))
    unknown = unknown_calls(modules, interpreter.is_builtin)
    if unknown:
        return "refused", str(unknown[0])
    try:
        for name, text in modules:
            interpreter.add_module(name, canonical_literals(text))
        if case.get("data") is not None:
            interpreter.add_data_json(json.dumps(case["data"], ensure_ascii=False))
        if "input_term" in case:
            interpreter.set_input_term(canonical_literals(case["input_term"]))
        elif "input" in case:
            interpreter.set_input(to_native(case["input"]))
    except Exception as exc:  # a compile error
        return ("pass", "compile error, as OPA") if wants_error else ("fail", f"compile error: {exc}"[:300])
    ok, text = take_output(c.rego_query(interpreter._impl, canonical_literals(case["query"])))
    if not ok:
        return ("pass", "error, as OPA") if wants_error else ("fail", f"error: {text[:200]}")
    if wants_error:
        return "fail", f"no error (OPA: {case.get('want_error_code', '')} {case.get('want_error', '')})"[:300]
    if text == "undefined":
        rows: list[dict[str, Any]] = []
    else:
        try:
            parsed = json.loads(text)
        except ValueError:
            return "fail", f"unreadable output: {text[:200]}"
        results = parsed if isinstance(parsed, list) else [parsed]
        rows = [r.get("bindings", {}) for r in results]
    want = case.get("want_result") or []
    sort_bindings = bool(case.get("sort_bindings"))
    if _rows(rows, sort_bindings) == _rows(want, sort_bindings):
        return "pass", ""
    return "fail", f"got {json.dumps(rows)[:150]} want {json.dumps(want)[:150]}"


def evaluate_regorus(case: dict[str, Any]) -> tuple[str, str]:
    """Run one case on regorus (Microsoft's Rust engine; its Python bindings are published on PyPI
    only by forks, e.g. ``gordon-to-regorus``: not a project dependency, install it to compare)."""
    import regorus  # type: ignore[import-not-found]

    wants_error = "want_error" in case or "want_error_code" in case
    engine = regorus.Engine()
    try:
        for i, text in enumerate(case.get("modules") or []):
            engine.add_policy(f"module-{i}.rego", text)
        if case.get("data") is not None:
            engine.add_data_json(json.dumps(case["data"]))
        if "input_term" in case:
            return "refused", "regorus takes input as JSON only"
        if "input" in case:
            engine.set_input_json(json.dumps(case["input"]))
    except Exception as exc:
        return ("pass", "compile error, as OPA") if wants_error else ("fail", f"compile error: {str(exc)[:200]}")
    try:
        parsed = json.loads(engine.eval_query_as_json(case["query"]))
    except Exception as exc:
        return ("pass", "error, as OPA") if wants_error else ("fail", f"error: {str(exc)[:200]}")
    if wants_error:
        return "fail", "no error"
    rows = [r.get("bindings", {}) for r in parsed.get("result", [])]
    sort_bindings = bool(case.get("sort_bindings"))
    if _rows(rows, sort_bindings) == _rows(case.get("want_result") or [], sort_bindings):
        return "pass", ""
    return "fail", f"got {json.dumps(rows)[:150]} want {json.dumps(case.get('want_result'))[:150]}"


ENGINES = {"regopy": evaluate, "regorus": evaluate_regorus}


def run_families(families: list[str], engine: str = "regopy") -> list[dict[str, str]]:
    """Evaluate the cases of ``families`` in this process, on ``engine``."""
    wanted = set(families)
    evaluate_case = ENGINES[engine]
    outcomes = []
    for case in load_cases():
        if case["family"] in wanted:
            outcome, detail = evaluate_case(case)
            outcomes.append({"family": case["family"], "source": case["source"], "note": case["note"],
                             "outcome": outcome, "detail": detail})
    return outcomes


def _child(families: list[str], seconds: float, engine: str, python: str) -> list[dict[str, str]] | None:
    try:
        child = subprocess.run([python, "-m", "tools.opa_conformance", "family", "--engine", engine, *families],
                               capture_output=True, text=True, timeout=seconds, cwd=ROOT)
        return json.loads(child.stdout) if child.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError):
        return None


def run(families: list[str] | None = None, seconds: float = FAMILY_SECONDS, engine: str = "regopy",
        python: str = sys.executable) -> dict[str, Any]:
    """Every family in a child process (one for all; one per family if that one crashes or hangs);
    a summary with per-family counts and the overall rate."""
    all_cases = load_cases()
    names = sorted({c["family"] for c in all_cases}) if not families else families
    sizes: dict[str, int] = defaultdict(int)
    for case in all_cases:
        sizes[case["family"]] += 1
    started = time.monotonic()
    outcomes = _child(names, seconds * 4, engine, python)
    by_family: dict[str, list[dict[str, str]] | None] = defaultdict(list)
    if outcomes is not None:
        for item in outcomes:
            by_family[item["family"]].append(item)  # type: ignore[union-attr]
    else:
        for name in names:
            by_family[name] = _child([name], seconds, engine, python)
    per_family: dict[str, dict[str, int]] = {}
    failures: dict[str, list[dict[str, str]]] = {}
    for name in names:
        counts = {"cases": sizes[name], "pass": 0, "fail": 0, "refused": 0, "crashed": 0}
        items = by_family.get(name)
        if items is None:
            counts["crashed"] = sizes[name]
        else:
            for item in items:
                counts[item["outcome"]] += 1
            failures[name] = [o for o in items if o["outcome"] != "pass"]
        per_family[name] = counts
    total = {k: sum(f[k] for f in per_family.values()) for k in ("cases", "pass", "fail", "refused", "crashed")}
    return {"engine": _engine_version(engine, python), "source": SOURCE, "families": per_family, "total": total,
            "pass_rate": total["pass"] / total["cases"] if total["cases"] else 0.0,
            "seconds": round(time.monotonic() - started, 1), "failures": failures}


def _engine_version(engine: str, python: str) -> str:
    distribution = {"regopy": "regopy", "regorus": "gordon-to-regorus"}[engine]
    code = f"from importlib.metadata import version; print(version({distribution!r}))"
    found = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return f"{distribution} {found.stdout.strip() or '?'}"


def markdown(summary: dict[str, Any]) -> str:
    """The per-family table published in docs/adapters/opa.md."""
    lines = ["| family | cases | pass | wrong or error | refused at load | crashed | pass rate |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, f in summary["families"].items():
        lines.append(f"| {name} | {f['cases']} | {f['pass']} | {f['fail']} | {f['refused']} | {f['crashed']} |"
                     f" {f['pass'] / f['cases']:.0%} |")
    t = summary["total"]
    lines.append(f"| **all** | {t['cases']} | {t['pass']} | {t['fail']} | {t['refused']} | {t['crashed']} |"
                 f" **{summary['pass_rate']:.1%}** |")
    return "\n".join(lines)


RECORD = ROOT / "adapters" / "opa" / "_conformance_record.py"


def write_record(summary: dict[str, Any], path: Path = RECORD) -> None:
    """Record the figures the docs publish (``adapters/opa/_conformance.py``) and the test holds the engine to."""
    families = {name: [f["cases"], f["pass"], f["fail"], f["refused"], f["crashed"]]
                for name, f in summary["families"].items()}
    rows = "\n".join(f"    {name!r}: {counts!r}," for name, counts in families.items())
    path.write_text(f'''"""OPA conformance of the embedded engine, as recorded by ``python -m tools.opa_conformance run --record``.

Do not edit: rerun the tool. ``tests/opa/test_conformance.py`` fails when a family passes
fewer cases than recorded here; the adapter's docs publish the table
(``adapters/opa/_conformance.py``).
"""

ENGINE = {summary["engine"]!r}
SOURCE = {summary["source"]!r}

#: family: [cases, pass, wrong or error, refused at load, crashed]
FAMILIES: dict[str, list[int]] = {{
{rows}
}}
''')


def main(argv: list[str] | None = None) -> int:
    """Command line: ``vendor``, ``family`` (one family, JSON outcomes) or ``run``."""
    parser = argparse.ArgumentParser(prog="python -m tools.opa_conformance", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("vendor")
    v.add_argument("test_data", type=Path)
    f = sub.add_parser("family")
    f.add_argument("--engine", choices=sorted(ENGINES), default="regopy")
    f.add_argument("names", nargs="+")
    r = sub.add_parser("run")
    r.add_argument("--json", type=Path)
    r.add_argument("--family", action="append")
    r.add_argument("--markdown", action="store_true")
    r.add_argument("--engine", choices=sorted(ENGINES), default="regopy")
    r.add_argument("--python", default=sys.executable, help="the interpreter that has the engine installed")
    r.add_argument("--record", action="store_true", help=f"write the figures to {RECORD.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if args.command == "vendor":
        print(f"{vendor(args.test_data)} cases written to {CASES}")
    elif args.command == "family":
        print(json.dumps(run_families(args.names, args.engine)))
    else:
        summary = run(args.family, engine=args.engine, python=args.python)
        if args.record:
            write_record(summary)
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
        if args.markdown:
            print(markdown(summary))
        else:
            t = summary["total"]
            print(f"{t['pass']}/{t['cases']} pass ({summary['pass_rate']:.1%}), {t['fail']} wrong or error,"
                  f" {t['refused']} refused at load, {t['crashed']} crashed; {summary['seconds']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

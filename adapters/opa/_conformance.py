"""The OPA conformance figures recorded by ``python -m tools.opa_conformance run --record``, as a docs section.

The figures themselves are in :mod:`adapters.opa._conformance_record` (written by the tool).
"""

from adapters.opa._conformance_record import ENGINE, FAMILIES, SOURCE

__all__ = ["ENGINE", "FAMILIES", "SOURCE", "section"]


def section() -> str:
    """The per-family table, as a section of the adapter's docstring."""
    total = [sum(counts[i] for counts in FAMILIES.values()) for i in range(5)]
    lines = ["Conformance with OPA's own test suite",
             f"    {total[1]} of {total[0]} cases ({total[1] / total[0]:.1%}) of OPA's conformance suite",
             "    (OPA's v1/test/cases/testdata as exported by",
             f"    {SOURCE};",
             "    vendored in tests/opa/conformance/) pass on",
             f"    {ENGINE} evaluated as the adapter evaluates policies (literals respelled,",
             "    input converted alike). A case calling a built-in rego-cpp lacks is refused at",
             "    load, never evaluated. Built-in errors are strict where the case says so, as",
             "    OPA's runner does; the adapter always runs strict. ``python -m tools.opa_conformance",
             "    run`` measures it; ``tests/opa/test_conformance.py`` keeps every family at or above",
             "    these figures.",
             "",
             "    | family | cases | pass | wrong or error | refused at load | crashed | pass rate |",
             "    |---|---:|---:|---:|---:|---:|---:|"]
    for name, (cases, passed, wrong, refused, crashed) in FAMILIES.items():
        lines.append(f"    | {name} | {cases} | {passed} | {wrong} | {refused} | {crashed} | {passed / cases:.0%} |")
    lines.append(f"    | all | {total[0]} | {total[1]} | {total[2]} | {total[3]} | {total[4]} |"
                 f" {total[1] / total[0]:.1%} |")
    return chr(10).join(lines)

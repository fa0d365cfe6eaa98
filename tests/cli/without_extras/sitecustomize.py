"""Loaded by tests through PYTHONPATH: makes the optional dependencies unimportable, as on a plain install."""

import sys

BLOCKED = {"regopy", "opa_client", "redis", "hiredis", "prometheus_client", "fluent", "msgpack"}


class _NotInstalled:
    """A meta-path finder that says the blocked top-level modules are not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".", 1)[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())

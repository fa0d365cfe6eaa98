"""The runtime: plugin host, compiled snapshots, dispatch, combination, caches, report queue."""

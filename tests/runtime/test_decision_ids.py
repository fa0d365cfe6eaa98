"""Decision ids: unique, in the form of a version 4 UUID, and never repeated by a forked worker."""

from __future__ import annotations

import os
import uuid

from policy.runtime.decision import new_decision_id


def test_ids_are_distinct_version_4_uuids():
    ids = [new_decision_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:50] + ids[-50:]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_forked_child_draws_ids_of_its_own():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next ids, then leave without running the parent's cleanup
        os.close(read)
        os.write(write, " ".join(new_decision_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [new_decision_id() for _ in range(100)]
    assert len(child) == 100 and not set(child) & set(parent)
    assert {text[:24] for text in child} != {text[:24] for text in parent}  # a prefix of its own, not a shared counter

"""Group commit: concurrent use cases share commits, yet each stays atomic and ordered."""
import threading

import pytest
from BTrees.OOBTree import OOBTree

from slapfed.core.errors import InvalidInput
from slapfed.services import tx


def _counter_use_case(key, fail=False):
    def use_case(app):
        if app.computers.get("__test__") is None:
            app.computers["__test__"] = OOBTree()
        box = app.computers["__test__"]
        box[key] = box.get(key, 0) + 1
        if fail:
            raise InvalidInput(f"use case {key} refuses")
        return key
    return use_case


def test_concurrent_use_cases_all_commit_and_a_failing_one_leaves_no_trace(master_db, master_runtime):
    results, errors = {}, {}
    barrier = threading.Barrier(24)

    def worker(i):
        barrier.wait()
        try:
            results[i] = tx.write(master_runtime, _counter_use_case(f"k{i}", fail=(i % 5 == 0)))
        except InvalidInput as exc:
            errors[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(errors) == [i for i in range(24) if i % 5 == 0]
    assert sorted(results) == [i for i in range(24) if i % 5]
    box = tx.read(master_runtime, lambda app: dict(app.computers["__test__"]))
    assert box == {f"k{i}": 1 for i in range(24) if i % 5}


def test_a_use_case_that_raises_an_unexpected_error_only_fails_its_caller(master_runtime):
    def broken(app):
        app.computers["__broken__"] = OOBTree()
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        tx.write(master_runtime, broken)
    assert tx.write(master_runtime, _counter_use_case("after")) == "after"
    assert tx.read(master_runtime, lambda app: "__broken__" in app.computers) is False

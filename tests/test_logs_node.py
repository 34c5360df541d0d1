"""The node's log: a failed partition is named with its instance at WARNING, and its log
tail (which may quote the instance's parameters) stays out of every line, even at DEBUG.
Real master in a thread, real buildout, real supervisord (the fixtures of
test_node_agent)."""
import logging

import pytest

from test_node_agent import FAILING, master, node, settle  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(300)
SECRET = "s3cr3t-parameter-value"


def test_a_failed_partition_is_logged_by_id_without_its_parameters(node, master, caplog):
    caplog.set_level(logging.DEBUG, logger="slapfed")
    client = master["client"]
    client.supply("c1", FAILING)
    broken = client.request("broken", FAILING, parameters={"reason": SECRET})
    settle(node)
    assert SECRET in client.show(broken["id"])["status"]["log_tail"]   # the requester sees it

    assert not any(SECRET in r.getMessage() for r in caplog.records)
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    (failed,) = [r for r in warned if getattr(r, "partition", None)]
    assert failed.instance == broken["id"] and failed.state == "failed"
    assert f"instance {broken['id']}): failed" in failed.getMessage()
    assert "buildout log" in failed.getMessage()

"""The buildout fork server: forks the buildout runs made as partition users.

Depends on the standard library and node.buildout (the child's work). The agent (root)
starts it once as a fresh interpreter (``python -m slapfed.node.zygote``), so that a
child running a partition's recipes never holds the agent's memory (the node's key,
every partition's parameters) nor its open files. It warms zc.buildout up, then reads
one JSON request a line on stdin ({cfg, cwd, log, user, uid, gid, groups, home,
umask}), forks a child for it, answers {"pid"} at once and {"code"} when the child
ends. The agent kills a child past its timeout by its process group. EOF on stdin (the
agent gone) ends the server.
"""
from __future__ import annotations

import json
import os
import sys


def _answer(data: dict) -> None:
    os.write(1, (json.dumps(data) + "\n").encode())


def main() -> None:
    from .buildout import ForkRunner, confined_child
    from .confine import Credentials

    ForkRunner().warm_up()
    _answer({"ready": True})
    for line in sys.stdin:
        try:
            req = json.loads(line)
            user = Credentials(req["user"], int(req["uid"]), int(req["gid"]),
                               tuple(int(g) for g in req["groups"]), req["home"])
        except (ValueError, KeyError, TypeError) as exc:
            _answer({"error": f"bad request: {exc}"})
            continue
        pid = os.fork()
        if pid == 0:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.closerange(3, 65536)
            confined_child(req["cfg"], req["cwd"], req["log"], user, int(req["umask"]))
        _answer({"pid": pid})
        _, status = os.waitpid(pid, 0)
        _answer({"code": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    main()

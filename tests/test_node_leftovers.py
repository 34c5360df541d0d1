"""Processes a partition leaves behind: found in /proc by directory or program, stopped
by PID; nothing outside the partition is touched. Real processes."""
import subprocess
import sys

from slapfed.node.leftovers import processes_under, stop_leftovers
from slapfed.procs import pid_alive, stop_pid


def spawn(cwd, *argv):
    return subprocess.Popen(argv or ("sleep", "300"), cwd=cwd, start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def test_a_leftover_found_by_directory_or_program_is_stopped_and_others_kept(tmp_path):
    part, other = tmp_path / "part0", tmp_path / "part1"
    (part / "srv").mkdir(parents=True)
    other.mkdir()
    script = part / "srv" / "serve.py"
    script.write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                      "time.sleep(300)\n")
    by_cwd = spawn(part / "srv")
    by_program = spawn(other, sys.executable, str(script))     # ignores SIGTERM
    outside = spawn(other)
    try:
        import time
        time.sleep(0.3)                                      # the script is running
        found = processes_under(str(part))
        assert by_cwd.pid in found and by_program.pid in found
        assert outside.pid not in found
        assert processes_under(str(tmp_path / "part")) == []   # a prefix is not a parent
        stopped = stop_leftovers(str(part), grace=0.5)
        assert sorted(stopped) == sorted([by_cwd.pid, by_program.pid])
        for p in (by_cwd, by_program):
            p.wait(5)
        assert by_program.returncode == -9                  # SIGKILL after the grace
        assert pid_alive(outside.pid)
        assert stop_leftovers(str(part)) == []
    finally:
        for p in (by_cwd, by_program, outside):
            stop_pid(p.pid, 2, popen=p)

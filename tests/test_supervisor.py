"""A real supervisord in tmp_path: groups added, changed, removed; neighbours untouched;
programs added, removed, stopped and started one by one."""
from __future__ import annotations

import os
import time

import pytest

from slapfed.node.layout import Paths
from slapfed.node.supervisor import (
    Supervisor, list_services, program_name, render_group_conf,
)

pytestmark = pytest.mark.timeout(120)


def write_service(directory: str, name: str, body: str) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "w") as fh:
        fh.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)
    return path


def sync(sup: Supervisor, pid: str, autostart=True):
    pp = sup.paths.partition(pid)
    return sup.sync_group(pid, pp.path, pp.services, sup.paths.service_log_dir(pid), autostart)


def pids_of(sup: Supervisor, pid: str) -> dict:
    return {i["name"]: i["pid"] for i in sup.rpc.getAllProcessInfo() if i["group"] == pid}


def test_group_conf_has_one_program_per_service(tmp_path):
    services = [("web", "/p/etc/service/web"), ("my job", "/p/etc/service/my job")]
    conf = render_group_conf("part0", "/p", "/p/var/log", services, autostart=False)
    assert "[group:part0]\nprograms = part0_web,part0_my_job" in conf
    assert "[program:part0_my_job]" in conf and "autostart = false" in conf
    assert "stopasgroup = true" in conf and "killasgroup = true" in conf
    assert "stderr_logfile = /p/var/log/my_job.err.log" in conf


def test_only_executables_are_services(tmp_path):
    write_service(str(tmp_path), "b", "true")
    write_service(str(tmp_path), "a", "true")
    (tmp_path / "notes.txt").write_text("not a service")
    assert [n for n, _ in list_services(str(tmp_path))] == ["a", "b"]
    assert list_services(str(tmp_path / "absent")) == []


def test_groups_live_independently(supervisor):
    sup = supervisor
    for pid in ("part0", "part1"):
        write_service(sup.paths.partition(pid).services, "sleeper", "exec sleep 300")
        assert sync(sup, pid).programs == [program_name(pid, "sleeper")]
        assert sup.start_group(pid).ok
    before = pids_of(sup, "part1")
    assert all(before.values())

    # change part0: a second service appears; the first one keeps running
    first = pids_of(sup, "part0")["part0_sleeper"]
    write_service(sup.paths.partition("part0").services, "other", "exec sleep 301")
    assert sync(sup, "part0").created == ["part0_other"]
    health = sup.start_group("part0")
    assert health.ok and set(health.states) == {"part0_sleeper", "part0_other"}
    assert pids_of(sup, "part0")["part0_sleeper"] == first
    assert pids_of(sup, "part1") == before                    # neighbour untouched

    # stop part0 quickly (no blocking wait), part1 still runs
    started = time.monotonic()
    sup.stop_group("part0")
    assert time.monotonic() - started < 0.7
    assert set(sup.group_states("part0").values()) == {"STOPPED"}
    assert set(sup.group_states("part1").values()) <= {"STARTING", "RUNNING"}

    # remove part0 entirely
    sup.remove_group("part0")
    assert sup.group_states("part0") == {}
    assert not os.path.exists(sup.paths.group_conf("part0"))
    assert pids_of(sup, "part1") == before


def test_unchanged_group_is_not_restarted(supervisor):
    sup = supervisor
    write_service(sup.paths.partition("part2").services, "sleeper", "exec sleep 300")
    sync(sup, "part2")
    assert sup.start_group("part2").ok
    before = pids_of(sup, "part2")
    sync(sup, "part2")
    assert sup.start_group("part2").ok
    assert pids_of(sup, "part2") == before


def test_services_added_and_removed_touch_only_their_programs(supervisor):
    sup = supervisor
    pid = "part8"
    d = sup.paths.partition(pid).services
    for name in ("a", "b"):
        write_service(d, name, "exec sleep 300")
    assert sync(sup, pid).created == ["part8_a", "part8_b"]
    assert sup.start_group(pid).ok
    before = pids_of(sup, pid)

    write_service(d, "c", "exec sleep 300")                  # added: created, then started
    done = sync(sup, pid)
    assert done.programs == ["part8_a", "part8_b", "part8_c"] and done.created == ["part8_c"]
    assert sup.start_programs(pid, ["part8_c"]).ok
    now = pids_of(sup, pid)
    assert now["part8_c"] and {k: now[k] for k in before} == before

    os.unlink(os.path.join(d, "b"))                          # removed: stopped, forgotten
    child = now["part8_b"]
    assert sync(sup, pid).created == []
    assert pids_of(sup, pid) == {"part8_a": before["part8_a"], "part8_c": now["part8_c"]}
    assert not _alive(child) or _zombie(child)
    with open(sup.paths.group_conf(pid)) as fh:
        assert "part8_b" not in fh.read()

    # a program whose configuration changed (here: autostart) is replaced, stopped first
    assert set(sync(sup, pid, autostart=False).created) == {"part8_a", "part8_c"}
    assert set(sup.group_states(pid).values()) == {"STOPPED"}
    sup.remove_group(pid)


def test_single_programs_stop_and_start_alone(supervisor):
    sup = supervisor
    pid = "part9"
    d = sup.paths.partition(pid).services
    for name in ("a", "b"):
        write_service(d, name, "exec sleep 300")
    sync(sup, pid)
    assert sup.start_group(pid).ok
    before = pids_of(sup, pid)
    sup.stop_programs(pid, ["part9_a"])
    states = sup.group_states(pid)
    assert states["part9_a"] == "STOPPED" and states["part9_b"] in ("STARTING", "RUNNING")
    assert pids_of(sup, pid)["part9_b"] == before["part9_b"]
    health = sup.start_programs(pid, ["part9_a", "part9_b"], settle=2)  # b runs: left alone
    assert health.ok and health.states == {"part9_a": "RUNNING", "part9_b": "RUNNING"}
    after = pids_of(sup, pid)
    assert after["part9_a"] not in (0, before["part9_a"]) and after["part9_b"] == before["part9_b"]
    # a program that cannot start is reported, its stderr with it
    write_service(d, "a", "echo 'no config' >&2; exit 2")
    sup.stop_programs(pid, ["part9_a"])
    health = sup.start_programs(pid, ["part9_a"], settle=3)
    assert not health.ok and "no config" in health.message
    sup.remove_group(pid)


def test_without_update_in_place_a_changed_group_is_replaced_whole(supervisor):
    class OldSupervisor(Supervisor):
        def _update_in_place(self, pid):          # a supervisord predating updateGroup
            return None

    sup = OldSupervisor(supervisor.paths)
    pid = "part10"
    d = sup.paths.partition(pid).services
    write_service(d, "a", "exec sleep 300")
    sync(sup, pid)
    assert sup.start_group(pid).ok
    write_service(d, "b", "exec sleep 300")
    assert sync(sup, pid).created == ["part10_a", "part10_b"]
    assert sup.start_group(pid).ok
    sup.remove_group(pid)


def test_crashing_service_is_reported_with_its_stderr(supervisor):
    sup = supervisor
    write_service(sup.paths.partition("part3").services, "crasher",
                  "echo 'cannot bind: address in use' >&2; exit 3")
    sync(sup, "part3")
    health = sup.start_group("part3", settle=3)
    assert not health.ok
    assert "part3_crasher" in health.message and "cannot bind" in health.message
    sup.remove_group("part3")


def test_autostart_false_group_stays_stopped_until_started(supervisor):
    sup = supervisor
    write_service(sup.paths.partition("part4").services, "sleeper", "exec sleep 300")
    sync(sup, "part4", autostart=False)
    time.sleep(0.2)
    assert set(sup.group_states("part4").values()) == {"STOPPED"}
    assert sup.start_group("part4").ok
    sup.remove_group("part4")


def test_empty_service_dir_removes_the_group(supervisor):
    sup = supervisor
    d = sup.paths.partition("part5").services
    write_service(d, "sleeper", "exec sleep 300")
    sync(sup, "part5")
    os.unlink(os.path.join(d, "sleeper"))
    assert sync(sup, "part5").programs == []
    assert sup.group_states("part5") == {}


def test_shutdown_stops_supervisord_and_services(tmp_path):
    paths = Paths(str(tmp_path / "n"))
    sup = Supervisor(paths)
    try:
        sup.ensure_running()
        sup.ensure_running()                                   # idempotent
        write_service(paths.partition("part0").services, "sleeper", "exec sleep 300")
        sync(sup, "part0")
        assert sup.start_group("part0").ok
        child = pids_of(sup, "part0")["part0_sleeper"]
        daemon = sup.pid()
        assert sup.shutdown() is True
        assert not _alive(daemon) and not _alive(child)
        assert sup.shutdown() is False
    finally:
        _kill(sup)


def _alive(pid):
    from slapfed.procs import pid_alive
    return pid_alive(pid)


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _kill(sup: Supervisor):
    """Finalizer: make sure no supervisord of this test survives (by PID)."""
    pid = sup.pid()
    if pid and _alive(pid):
        sup.shutdown(timeout=10)


def test_one_group_file_is_read_alone_and_says_what_changed(supervisor):
    sup = supervisor
    pid = "part7"
    pp = sup.paths.partition(pid)
    assert sup.load_group_file(pid) == "absent"
    write_service(pp.services, "sleeper", "exec sleep 300")
    assert sync(sup, pid).programs == [program_name(pid, "sleeper")]
    assert sup.load_group_file(pid) == "unchanged"
    # a new service changes the file: reported as changed, and no other group is re-read
    write_service(pp.services, "second", "exec sleep 300")
    conf = render_group_conf(pid, pp.path, sup.paths.service_log_dir(pid),
                             list_services(pp.services), True)
    with open(sup.paths.group_conf(pid), "w") as fh:
        fh.write(conf)
    assert sup.load_group_file(pid) == "changed"
    os.unlink(sup.paths.group_conf(pid))
    assert sup.load_group_file(pid) == "removed"


def test_a_broken_group_file_is_refused_with_its_path(supervisor):
    from slapfed.node.supervisor import SupervisorError
    sup = supervisor
    os.makedirs(os.path.dirname(sup.paths.group_conf("bad")), exist_ok=True)
    with open(sup.paths.group_conf("bad"), "w") as fh:
        fh.write("[group:bad]\nprograms = bad_x\n[program:bad_x]\ncommand =\nstartsecs = x\n")
    with pytest.raises(SupervisorError) as exc:
        sup.load_group_file("bad")
    assert "bad.conf" in exc.value.message


def test_services_whose_names_make_the_same_program_are_refused(tmp_path):
    """"a b" and "a_b" would both be supervisord program part0_a_b: the partition fails
    with both names, before supervisord is asked anything."""
    from slapfed.node.layout import Paths
    from slapfed.node.supervisor import Supervisor, SupervisorError, program_clash

    services = tmp_path / "services"
    services.mkdir()
    for name in ("a b", "a_b", "web"):
        (services / name).write_text("#!/bin/sh\nexec sleep 100\n")
        (services / name).chmod(0o755)
    listed = [(n, str(services / n)) for n in ("a b", "a_b", "web")]
    assert "'a b' and 'a_b'" in program_clash("part0", listed)
    assert program_clash("part0", listed[1:]) is None
    sup = Supervisor(Paths(str(tmp_path / "root")))
    with pytest.raises(SupervisorError) as err:
        sup.sync_group("part0", str(tmp_path), str(services), str(tmp_path / "log"), True)
    assert "would both be supervisord program 'part0_a_b'" in err.value.message
    assert not (tmp_path / "log").exists()                 # nothing was written

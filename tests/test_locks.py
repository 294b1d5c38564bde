"""exclusive_lock: one job per folder, a dead holder never blocks, a live one is named."""

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alexnet.errors import UserError
from alexnet.locks import exclusive_lock


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_lock_is_created_in_a_new_folder_and_removed_on_exit(tmp_path):
    folder = tmp_path / "runs" / "a"
    with exclusive_lock(folder, "training run 'a'"):
        record = json.loads((folder / ".lock").read_text())
        assert record["host"] == socket.gethostname() and record["argv"] == sys.argv
    assert folder.is_dir() and not (folder / ".lock").exists()


def test_lock_is_removed_when_the_block_raises(tmp_path):
    with pytest.raises(RuntimeError), exclusive_lock(tmp_path, "x"):
        raise RuntimeError("boom")
    assert not (tmp_path / ".lock").exists()


def test_a_live_holder_in_another_process_is_refused_by_name(tmp_path):
    code = ("import sys, time; from alexnet.locks import exclusive_lock\n"
            f"with exclusive_lock({str(tmp_path)!r}, 'x'):\n"
            "    print('held', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, "--name", "first"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError) as e, exclusive_lock(tmp_path, "training run 'first'", "use another --name"):
            pass
        msg = str(e.value)
        assert "\n" not in msg
        assert f"training run 'first' is in use by pid {holder.pid} on {socket.gethostname()}" in msg
        assert "--name first" in msg and "use another --name" in msg
        assert f"delete {tmp_path / '.lock'}" in msg
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / ".lock").exists()  # the refused job must not remove the holder's lock


def test_a_dead_holder_is_taken_over(tmp_path, capsys):
    lockfile = tmp_path / ".lock"
    pid = _dead_pid()
    lockfile.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "then", "argv": ["x"]}))
    with exclusive_lock(tmp_path, "x"):
        assert json.loads(lockfile.read_text())["pid"] != pid
    assert f"left by pid {pid}" in capsys.readouterr().out
    assert not lockfile.exists() and list(tmp_path.iterdir()) == []


def test_an_unreadable_lock_is_taken_over(tmp_path):
    (tmp_path / ".lock").write_text("")  # a crash between the create and the write
    t0 = time.monotonic()
    with exclusive_lock(tmp_path, "x"):
        assert json.loads((tmp_path / ".lock").read_text())["argv"] == sys.argv
    assert time.monotonic() - t0 < 5


def test_a_holder_on_another_host_is_assumed_alive(tmp_path):
    (tmp_path / ".lock").write_text(json.dumps(
        {"pid": _dead_pid(), "host": "some-other-node", "started": "2026-01-01", "argv": ["train.py"]}))
    with pytest.raises(UserError, match="on some-other-node since 2026-01-01 \\(train.py\\)"):
        with exclusive_lock(tmp_path, "x"):
            pass


def test_a_lock_replaced_by_another_job_is_left_alone(tmp_path):
    lockfile = tmp_path / ".lock"
    other = {"pid": 1, "host": "elsewhere", "started": "now", "argv": []}
    with exclusive_lock(tmp_path, "x"):
        lockfile.write_text(json.dumps(other))  # the user deleted ours and another job took it
    assert json.loads(lockfile.read_text()) == other


def test_a_uri_is_not_locked(tmp_path):
    with exclusive_lock("s3://bucket/runs/a", "x"):
        pass
    assert not Path("s3:").exists()


def test_a_sweep_is_refused_while_its_name_is_held_and_its_trials_lock_apart(tmp_path):
    from alexnet.config import SweepConfig, TrainConfig
    from alexnet.sweep import sweep
    from alexnet.trainer import run_lock

    storage = str(tmp_path / "runs")
    with run_lock(storage, "s", "training run"):
        with pytest.raises(UserError, match=f"sweep 's' in --storage {storage} is in use by pid"):
            sweep(SweepConfig(name="s", storage=storage), TrainConfig())
        with run_lock(storage, "s-a1b2c_00000", "training run"):  # a trial's name: its own lock
            pass
    assert not (tmp_path / "runs" / "s").exists()  # the lock is beside Tune's folder, not in it

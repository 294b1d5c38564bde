"""One job per output folder: a lock file that names its holder.

Two jobs writing the same run folder (or the same prepared-data folder) silently corrupt
each other, so a job takes ``<folder>/.lock`` before it writes and a second job is refused
at once with the holder's pid, host, start time and command. The file is created with
O_CREAT|O_EXCL, which is atomic on local and NFSv3+ file systems. A lock whose holder
died (same host, pid gone) is taken over with a note, so a crash never blocks a folder
forever; a holder on another host cannot be checked and is assumed alive, and the message
says which file to delete when it is not.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alexnet.errors import UserError

LOCK_NAME = ".lock"


@contextmanager
def exclusive_lock(directory: Path | str, what: str, instead: str = "choose another") -> Iterator[None]:
    """Hold `directory`/.lock while the block runs (creating `directory`).

    `what` names the thing in the refusal ("training run 'x' (/runs/x)"); `instead` is the
    alternative offered to the user ("use another --name"). A URI (``s3://...``) is not
    locked: object stores have no atomic create-if-absent we can rely on, so jobs writing
    to one are only as safe as their unique default names.
    """
    if "://" in str(directory):
        yield
        return
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lockfile = directory / LOCK_NAME
    mine = _acquire(lockfile, what, instead)
    try:
        yield
    finally:
        if _read(lockfile) == mine:  # never remove a lock someone else took after a manual delete
            lockfile.unlink(missing_ok=True)


def _holder_record() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "argv": sys.argv}


def _acquire(lockfile: Path, what: str, instead: str) -> dict[str, Any]:
    record = _holder_record()
    for _ in range(5):  # each round either takes the lock, refuses, or clears a dead holder
        try:
            fd = os.open(lockfile, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                seen = os.stat(lockfile)  # the file we judge: only this one may be cleared
            except FileNotFoundError:
                continue  # released between our open and our stat
            holder = _read_settled(lockfile)
            if holder is None and not lockfile.exists():
                continue
            if holder is not None and _alive(holder):
                raise UserError(_refusal(what, instead, holder, lockfile)) from None
            _clear_stale(lockfile, seen, holder)
            continue
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
        except BaseException:  # a full disk: leave no empty lock behind
            lockfile.unlink(missing_ok=True)
            raise
        return record
    raise UserError(f"{what}: could not take {lockfile}: other jobs keep replacing it; "
                    f"check which jobs use this folder")


def _read(lockfile: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(lockfile.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _read_settled(lockfile: Path) -> dict[str, Any] | None:
    """The holder's record, waiting briefly for one that is being written (the creator
    writes right after its exclusive create); None if it stays unreadable (a crash between
    the create and the write), which counts as a dead holder."""
    for _ in range(10):
        holder = _read(lockfile)
        if holder is not None or not lockfile.exists():
            return holder
        time.sleep(0.1)
    return None


def _alive(holder: dict[str, Any]) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # cannot see another host's processes
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except (OSError, ValueError, OverflowError):
        return False
    return True


def _clear_stale(lockfile: Path, seen: os.stat_result, holder: dict[str, Any] | None) -> None:
    """Remove a dead holder's lock, but only that one: it is renamed away first and put
    back if, in between, another job had already replaced it with a live lock."""
    aside = lockfile.with_name(f"{lockfile.name}.stale-{os.getpid()}")
    try:
        os.rename(lockfile, aside)
    except FileNotFoundError:
        return  # another job cleared it first
    moved = os.stat(aside)
    # The same inode and the same record: a freed inode number is reused at once (ext4),
    # so a lock another job created after the dead one was cleared can share it.
    if (moved.st_ino, moved.st_dev) != (seen.st_ino, seen.st_dev) or _read(aside) != holder:
        # we moved a fresh lock: restore it (unless a third job took the name meanwhile)
        try:
            os.link(aside, lockfile)
        except OSError:
            pass
        aside.unlink(missing_ok=True)
        return
    aside.unlink(missing_ok=True)
    who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "an unreadable record"
    print(f"[lock] taking over {lockfile}: left by {who}, which is no longer running", flush=True)


def _refusal(what: str, instead: str, holder: dict[str, Any], lockfile: Path) -> str:
    argv = holder.get("argv") or []
    cmd = shlex.join(str(a) for a in argv) if isinstance(argv, list) else str(argv)
    if len(cmd) > 160:
        cmd = cmd[:157] + "..."
    return (f"{what} is in use by pid {holder.get('pid')} on {holder.get('host')} since "
            f"{holder.get('started')} ({cmd or 'unknown command'}); wait for it to finish or {instead}; "
            f"if that process is gone, delete {lockfile}")

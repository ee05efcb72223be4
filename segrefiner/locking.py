"""One writer per folder: an exclusive lock on ``<folder>/.segrefiner.lock`` while a run writes there.

Two runs into one output folder (or one training ``checkpoint.dir``) would interleave their
files; the second is refused with a line naming the holder. The lock is an ``flock`` on an
open file, so the system releases it when the holder exits, however it exits: there is no
stale lock to clean up after a kill. The file keeps a line describing the last holder.
Taking the lock also removes the temporary files a killed writer left behind (a resumed run
starts clean).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from segrefiner.errors import InputError

__all__ = ["LOCK_NAME", "FolderBusyError", "folder_lock", "remove_stale_temps"]

log = logging.getLogger(__name__)

# The names segrefiner.io.atomic_path gives its temporary files: ".<stem>.<8 random>.tmp<suffix>".
_TEMP = re.compile(r"^\..*\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")

LOCK_NAME = ".segrefiner.lock"


class FolderBusyError(InputError):
    """Another process holds the folder's lock."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "this run") -> Iterator[Path]:
    """Hold ``folder``'s lock (creating the folder) for the ``with`` block; yields the lock file.

    Raises :class:`FolderBusyError` at once when another process holds it, naming that process.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fh = open(folder / LOCK_NAME, "a+", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{folder}: cannot be used as an output folder ({exc})") from exc
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise FolderBusyError(
                f"{folder}: in use by {holder}; {what} refused (wait for that run to end, or "
                "write elsewhere)"
            ) from None
        fh.seek(0)
        fh.truncate()
        command = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))
        fh.write(
            f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')} ({command})\n"
        )
        fh.flush()
        removed = remove_stale_temps(folder)
        if removed:
            log.info("%s: removed %d temporary files left by an interrupted run", folder, removed)
        yield folder / LOCK_NAME
    finally:
        fh.close()  # releases the lock


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Remove the temporary files an interrupted writer left in ``folder`` and its sub-folders
    (only names :func:`segrefiner.io.atomic_path` makes); call while holding its lock.
    Returns how many were removed."""
    removed = 0
    for path in Path(folder).rglob(".*.tmp*"):
        if path.is_file() and _TEMP.match(path.name):
            path.unlink(missing_ok=True)
            removed += 1
    return removed

"""Files that hold personal data (phone numbers, bodies, events): directories 0700, files 0600.

The data directory holds the spool, the DuckDB model and snapshots, hygiene reports with whole
numbers and the private PostgreSQL cluster: nothing in it is for other local users. Two guards,
because either alone leaks: every smsledger command starts with umask 077 (DuckDB, DuckLake and
PostgreSQL create files we cannot pass a mode to), and the places that create files themselves
give the mode explicitly (a library caller, or a test, may run with umask 022). ``secure_tree``
tightens what an older version, or another umask, left behind.

It lives in ``schema`` because ingest (the spool), analytics (model, snapshots, reports) and
the shell all write under the data directory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600


def private_umask() -> int:
    """Make every file this process creates from now on private; returns the old umask."""
    return os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> Path:
    """``path`` as a directory, made (with its missing parents) 0700 if need be."""
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass
        # mkdir's mode is filtered by the umask; say it once more, whatever the umask.
        os.chmod(directory, DIR_MODE)
    if path.is_dir() and not path.is_symlink():
        _tighten(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Tighten a file something else created (DuckDB, ``shutil.copyfile``) to 0600."""
    if path.exists() and not path.is_symlink():
        _tighten(path, FILE_MODE)
    return path


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """``os.open`` with mode 0600 whatever the umask (an existing file is tightened too).
    Never follows a symlink at ``path``: a link planted there is an error, not a redirect."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (replacing it), mode 0600."""
    fd = open_private(path)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _tighten(path: Path, mode: int) -> bool:
    """Take the group's and others' bits off ``path``; False if there were none, or if the
    file went away meanwhile (the worker replaces snapshots and WAL files as we walk)."""
    try:
        current = stat.S_IMODE(os.lstat(path).st_mode)
        if current & 0o077:
            os.chmod(path, current & ~0o077 | (mode & 0o700))
            return True
    except FileNotFoundError:
        pass
    return False


def secure_tree(root: Path) -> int:
    """Directories under ``root`` (itself included) to 0700, regular files to 0600, where they
    were looser; symlinks and sockets are left alone (a symlink's mode means nothing, and
    ``chmod`` would follow it out of the tree). Returns how many were tightened."""
    if not root.is_dir() or root.is_symlink():
        return 0
    fixed = int(_tighten(root, DIR_MODE))
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs:
            path = Path(folder, name)
            if not path.is_symlink():
                fixed += _tighten(path, DIR_MODE)
        for name in files:
            path = Path(folder, name)
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:    # a file replaced while we walk (a snapshot, a WAL)
                continue
            if stat.S_ISREG(mode):
                fixed += _tighten(path, FILE_MODE)
    return fixed


# What smsledger keeps directly under the data directory (the data directory may be a folder
# with other things in it, such as a checkout: ``secure_data_dir`` walks only these).
OWNED = ("spool", "snapshots", "reports", "lake", "pg", "dashboard", "*.duckdb", "*.duckdb.*",
         "backfill-*.json", "backfill-*.tmp", "*.log")


def secure_data_dir(data_dir: Path) -> int:
    """At the start of every command: the data directory 0700, and what smsledger keeps in it
    tightened (``secure_tree``). Returns how many entries were tightened."""
    if not data_dir.is_dir() or data_dir.is_symlink():
        return 0
    fixed = int(_tighten(data_dir, DIR_MODE))
    seen: set[Path] = set()
    for pattern in OWNED:
        for path in data_dir.glob(pattern):
            if path in seen or path.is_symlink():
                continue
            seen.add(path)
            if path.is_dir():
                fixed += secure_tree(path)
            elif path.is_file():
                fixed += _tighten(path, FILE_MODE)
    return fixed

"""Files in and out, safely: inputs are regular files of bounded size (never a device, a FIFO
or a folder, which could block or never end); outputs go through a temporary file in the
destination's folder and a rename, so that a failed write (a full disk, ``ulimit -f``)
leaves the old file whole, and an existing output that is not a regular file is refused.

Every problem is an :class:`~irtools.ir.errors.IrtoolsError` of the caller's class with one
line of text (docs/architecture.md: bad input is one line, exit status 2).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from irtools.ir.errors import ExportError, IrtoolsError, LimitError

#: Text inputs (a target TOML, a config.json) are small; anything larger is refused.
MAX_TEXT_BYTES = 16 * 2**20
_CHUNK = 1 << 20


def _open_regular(path: Path, what: str, error: type[IrtoolsError]) -> int:
    """An fd on a regular file; opening never blocks (O_NONBLOCK: a FIFO without writer)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        os.close(fd)
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise error(f"{path}: not a regular file (a {_kind(mode)}); the {what} must be a plain file")
    return fd


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "folder"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def read_bytes(path, limit: int, what: str = "file", error: type[IrtoolsError] = IrtoolsError) -> bytes:
    """The contents of a regular file of at most ``limit`` bytes (LimitError beyond)."""
    path = Path(path)
    fd = _open_regular(path, what, error)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise LimitError(f"{path}: {size} bytes, over the {limit}-byte limit of a {what}")
        chunks, total = [], 0
        while True:  # the size may change while we read: never read past the limit
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise LimitError(f"{path}: over the {limit}-byte limit of a {what}")
        return b"".join(chunks)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_text(path, limit: int = MAX_TEXT_BYTES, what: str = "file", error: type[IrtoolsError] = IrtoolsError) -> str:
    """:func:`read_bytes` decoded as UTF-8 (one-line error otherwise)."""
    data = read_bytes(path, limit, what, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: the {what} is not UTF-8 text (byte {exc.start})") from None


def check_output(path, force: bool, error: type[IrtoolsError] = ExportError) -> Path:
    """Refuse an output that exists and is not a regular file, or exists without ``force``."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode  # follows links: a link to /dev/null is a device
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise error(f"cannot write {path}: {exc.strerror or exc}") from None
    if mode is None and os.path.islink(path):
        raise error(f"cannot write {path}: it is a dangling symbolic link")
    if mode is not None and not stat.S_ISREG(mode):
        raise error(f"refusing to write {path}: it exists and is a {_kind(mode)}, not a regular file")
    if mode is not None and not force:
        raise error(f"{path} exists (use --force to overwrite)")
    return path


def _atomic(path, fill: Callable[[IO[bytes]], None], force: bool, error: type[IrtoolsError]) -> Path:
    path = check_output(path, force, error)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise error(f"cannot write {path}: folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:64]}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise error(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        check_output(path, True, error)  # still not a device, FIFO or folder
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise error(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_atomic(path, data: str | bytes, *, force: bool = False, error: type[IrtoolsError] = ExportError) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` through a temporary file and a rename.

    An existing ``path`` needs ``force`` and must be a regular file; on any failure (no space,
    RLIMIT_FSIZE) the temporary file is removed and ``path`` is left as it was."""
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return _atomic(path, lambda f: f.write(payload), force, error)


def copy_atomic(src, dst, *, force: bool = False, what: str = "file", error: type[IrtoolsError] = ExportError) -> Path:
    """Copy the regular file ``src`` to ``dst`` (streamed; any size) the way :func:`write_atomic` writes."""
    fd = _open_regular(Path(src), what, error)
    try:
        with os.fdopen(fd, "rb") as source:
            os.set_blocking(source.fileno(), True)
            return _atomic(dst, lambda f: shutil.copyfileobj(source, f, _CHUNK), force, error)
    except OSError as exc:
        raise error(f"cannot read {what} {src}: {exc.strerror or exc}") from None


__all__ = ["MAX_TEXT_BYTES", "check_output", "copy_atomic", "read_bytes", "read_text", "write_atomic"]

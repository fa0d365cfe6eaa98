"""Unix socket ownership: never take over a live server's socket, never delete another's.

A server about to bind ``unix:/path``:

* refuses to start when something answers on the path (another server owns it);
* removes the path only when it is a socket nobody answers on (left by a killed process);
* refuses a path that exists and is not a socket (it is not ours to delete);
* binds with the configured permission bits (default ``0660``: owner and group).

On stop it unlinks the path only when it is still the socket it bound (same device
and inode), so a server that was replaced cannot delete its successor's socket.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import stat
from dataclasses import dataclass
from typing import Any

#: Permission bits of a socket the server creates, unless configured otherwise.
DEFAULT_SOCKET_MODE = 0o660

_private_names = itertools.count()
_MAX_PATH = 108  # sun_path, with its terminating NUL


class SocketInUseError(OSError):
    """Another server answers on the socket path (or the path is not a socket)."""


@dataclass(frozen=True)
class OwnedSocket:
    """A socket file this process bound: its path and identity (device, inode)."""

    path: str
    device: int
    inode: int

    def is_still_ours(self) -> bool:
        """True when the path is still the very socket this process bound."""
        try:
            info = os.lstat(self.path)
        except OSError:
            return False
        return stat.S_ISSOCK(info.st_mode) and (info.st_dev, info.st_ino) == (self.device, self.inode)

    def remove(self) -> bool:
        """Unlink the path when it is still ours; True when it was removed."""
        if not self.is_still_ours():
            return False
        try:
            os.unlink(self.path)
        except OSError:
            return False
        return True


def answers(path: str, timeout: float = 1.0) -> bool:
    """True when a process accepts connections on the Unix socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(path)
        except socket.timeout:
            return True  # a listener with a full backlog is still alive
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                return False
            if exc.errno == errno.EAGAIN:
                return True  # backlog full: alive
            raise
    return True


def prepare_path(path: str) -> None:
    """Make ``path`` free to bind: create its directory, remove a stale socket, refuse a live one.

    :raises SocketInUseError: a server answers on ``path``, or ``path`` is not a socket.
    :raises OSError: the directory cannot be created or the stale socket removed.
    """
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise SocketInUseError(f"cannot listen on unix:{path}: the path exists and is not a socket")
    if answers(path):
        raise SocketInUseError(f"cannot listen on unix:{path}: another server is listening there")
    os.unlink(path)  # left by a process that died without cleaning up


def bind(server: Any, path: str, mode: int = DEFAULT_SOCKET_MODE) -> OwnedSocket:
    """Bind ``server`` (a grpc server) to the Unix socket ``path`` without ever replacing another's socket.

    gRPC binds a private name in the same directory; the socket gets its mode there,
    then is hard-linked to ``path`` (which fails when ``path`` exists, so two servers
    starting together cannot both claim it) and the private name is removed. gRPC,
    which deletes the path it bound when it stops, so only ever deletes the private name.

    :raises SocketInUseError: a server answers on ``path``, or it is not a socket.
    :raises OSError: the socket cannot be bound (missing permission, path too long ...).
    """
    try:
        return _bind(server, path, mode)
    except SocketInUseError:
        raise
    except OSError as exc:
        raise OSError(f"cannot listen on unix:{path}: {exc.strerror or exc}") from None


def _bind(server: Any, path: str, mode: int) -> OwnedSocket:
    prepare_path(path)
    directory = os.path.dirname(path) or "."
    private = os.path.join(directory, f".policy-{os.getpid()}-{next(_private_names)}.sock")
    if len(os.fsencode(private)) >= _MAX_PATH:
        raise OSError(errno.ENAMETOOLONG, f"the directory's path is too long for a Unix socket"
                                          f" (at most {_MAX_PATH - 30} bytes)")
    try:
        server.add_insecure_port(f"unix:{private}")
    except RuntimeError:
        raise OSError(errno.EACCES, "the socket cannot be bound there (is the directory writable?)") from None
    try:
        os.chmod(private, mode)
        info = os.lstat(private)
        try:
            os.link(private, path)
        except FileExistsError:
            prepare_path(path)  # raced with another server starting, or a stale socket reappeared: decide again
            os.link(private, path)
    finally:
        try:
            os.unlink(private)
        except OSError:
            pass
    return OwnedSocket(path, info.st_dev, info.st_ino)


__all__ = ["DEFAULT_SOCKET_MODE", "OwnedSocket", "SocketInUseError", "answers", "bind", "prepare_path"]

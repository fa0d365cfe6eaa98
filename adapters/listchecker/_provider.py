"""Where a list comes from: ``file://`` paths and ``http(s)://`` URLs, read off the event loop."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: A provider answering more than this is refused (Mixer read bodies unbounded).
MAX_LIST_BYTES = 64 * 1024 * 1024

#: Upper bound of one fetch, in seconds (a shorter refresh interval bounds it further).
FETCH_TIMEOUT = 30.0

SCHEMES = ("file", "http", "https")


class FetchError(Exception):
    """The provider could not be read; the message says why."""


def url_error(url: str) -> str | None:
    """Tell what is wrong with a provider URL, or None when it is usable."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"not a URL: {exc}"
    if not parts.scheme:
        return f"{url!r} has no scheme (expected http://, https:// or file://)"
    if parts.scheme not in SCHEMES:
        return f"unsupported scheme {parts.scheme!r} in {url!r} (expected http, https or file)"
    if parts.scheme == "file":
        if not (parts.netloc + parts.path).strip("/"):
            return f"{url!r} names no file"
    elif not parts.hostname:
        return f"{url!r} has no host"
    return None


def file_path(url: str, config_dir: Path) -> Path:
    """The path a ``file:`` URL names; relative ones are relative to ``config_dir``.

    ``file:///abs/list.txt`` is absolute; ``file:lists/a.txt`` and ``file://lists/a.txt``
    are both read as the relative path ``lists/a.txt`` (``localhost`` as host is ignored).
    """
    parts = urlsplit(url)
    host = "" if parts.netloc in ("", "localhost") else parts.netloc
    raw = unquote(host + parts.path if host else parts.path)
    path = Path(raw)
    return path if path.is_absolute() else config_dir / path


class Provider:
    """Fetches a list's raw content from a file or an HTTP(S) URL."""

    def __init__(self, url: str, config_dir: Path, timeout: float = FETCH_TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout
        self._path = file_path(url, config_dir) if urlsplit(url).scheme == "file" else None
        # Our own opener: honours the proxy environment as it is when the handler is built.
        self._opener = urllib.request.build_opener()

    async def fetch(self) -> bytes:
        """Read the whole content in a worker thread; FetchError says what went wrong."""
        return await asyncio.to_thread(self._read_file if self._path is not None else self._read_http)

    def _read_file(self) -> bytes:
        assert self._path is not None
        try:
            with self._path.open("rb") as f:
                data = f.read(MAX_LIST_BYTES + 1)
        except OSError as exc:
            raise FetchError(f"cannot read {self._path}: {exc.strerror or exc}") from exc
        return self._bounded(data)

    def _read_http(self) -> bytes:
        request = urllib.request.Request(self.url, headers={"User-Agent": "sidecar-policy-listchecker"})
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                if response.status != 200:
                    raise FetchError(f"HTTP {response.status} from {self.url}")
                data = response.read(MAX_LIST_BYTES + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise FetchError(f"HTTP {exc.code} from {self.url}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise FetchError(f"cannot fetch {self.url}: {reason}") from exc
        return self._bounded(data)

    def _bounded(self, data: bytes) -> bytes:
        if len(data) > MAX_LIST_BYTES:
            raise FetchError(f"{self.url} is larger than {MAX_LIST_BYTES} bytes")
        return data

"""Fetching release files: HTTP(S) with resume, a local folder (or ``file://`` URL), Google Drive
via gdown, checked archive extraction.

These are the generic pieces; which file goes where is ``pyscripts/tools/download.py``'s
business. A download always lands in a ``.part`` file beside its destination, which the
caller verifies and only then renames into place.
"""
from __future__ import annotations

import posixpath
import re
import shutil
import stat
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from email.message import Message
from http.client import HTTPException, HTTPResponse
from pathlib import Path

import gdown
import requests
from gdown.exceptions import DownloadError as GdownError
from tqdm import tqdm

from lib.sniff import ZIP_MAGIC, looks_like_html, read_head

CHUNK_SIZE = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+)")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


class DownloadError(RuntimeError):
    """A download or its verification failed; the message says what arrived instead."""


def part_path(destination: Path) -> Path:
    """The in-progress file of ``destination``: ``<name>.part`` in the same folder."""
    return destination.with_name(destination.name + ".part")


def _starts_with(path: Path, magic: bytes) -> bool:
    return read_head(path, len(magic)) == magic


def sniff_content(path: Path) -> str | None:
    """What ``path`` obviously is instead of data (an empty file, an HTML page), or None."""
    head = read_head(path)
    if not head:
        return "got an empty file"
    if looks_like_html(head):
        return "got an HTML page (Google Drive warning?)"
    return None


# --------------------------------------------------------------------------- HTTP(S)

def http_download(url: str, part: Path, timeout: float = 60.0) -> None:
    """Download ``url`` into ``part``, continuing from the bytes already there (HTTP Range).

    A server that ignores the Range header, answers for another offset, or finds the part
    longer than the file makes the download restart from byte 0. A transfer that ends
    before the advertised length raises ``DownloadError("truncated: N of M bytes")``; the
    part is kept for the next run only when the server accepts byte ranges.
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            if _content_range(error.headers) == (None, offset):
                return  # the part already holds the whole file
            part.unlink()
            return http_download(url, part, timeout)
        raise DownloadError(f"HTTP {error.code} {error.reason} from {url}") from None
    except (urllib.error.URLError, HTTPException, OSError) as error:
        raise DownloadError(f"cannot reach {url}: {getattr(error, 'reason', error)}") from None
    with response:
        start = _start_of_body(response, offset)
        if start is None:
            part.unlink()
            return http_download(url, part, timeout)
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        size = _write_body(response, part, start, total, label=posixpath.basename(url))
    if total is not None and size < total:
        resumable = response.status == 206 or response.headers.get("Accept-Ranges") == "bytes"
        if not resumable:
            part.unlink()
        hint = f"; {part} kept, run again to resume" if resumable else ""
        raise DownloadError(f"truncated: {size} of {total} bytes from {url}{hint}")


def _content_range(headers: Message) -> tuple[int | None, int] | None:
    """``(first byte or None for '*', total size)`` from a Content-Range header, if it has one."""
    match = _CONTENT_RANGE.match(headers.get("Content-Range", ""))
    if match is None:
        return None
    return (int(match.group(1)) if match.group(1) else None), int(match.group(2))


def _start_of_body(response: HTTPResponse, offset: int) -> int | None:
    """Byte offset in the file at which this response's body starts; None if it is unusable."""
    if response.status != 206:
        return 0  # a full response, also when the server ignored the Range header
    span = _content_range(response.headers)
    return offset if span is not None and span[0] == offset else None


def _write_body(response: HTTPResponse, part: Path, start: int, total: int | None, label: str) -> int:
    """Write the body to ``part`` from byte ``start`` on; return the part's size afterwards."""
    with open(part, "r+b" if start else "wb") as file, tqdm(
        total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=label
    ) as progress:
        file.seek(start)
        file.truncate()
        try:
            while chunk := response.read(CHUNK_SIZE):
                file.write(chunk)
                progress.update(len(chunk))
        except (HTTPException, OSError):
            pass  # the connection broke: the size check of the caller reports it
        return file.tell()


# --------------------------------------------------------------------------- local mirror

def local_folder(mirror: str) -> Path | None:
    """The folder a mirror names when it is a local path or a ``file://`` URL, else None."""
    parsed = urllib.parse.urlparse(mirror)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme and not _WINDOWS_DRIVE.match(mirror):
        return None
    return Path(mirror).expanduser()


def copy_download(source: Path, part: Path) -> None:
    """Copy ``source`` (a file of a local mirror) into ``part``."""
    if not source.is_file():
        raise DownloadError(f"not found in the mirror folder: {source}")
    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(source, part)
    except OSError as error:
        part.unlink(missing_ok=True)
        raise DownloadError(f"cannot copy {source}: {error.strerror}") from None


# --------------------------------------------------------------------------- Google Drive

def gdrive_download(file_id: str, part: Path) -> None:
    """Download Google Drive file ``file_id`` into ``part`` with gdown (which resumes on its own).

    A ``part`` already present is taken as downloaded (the caller verifies it).
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        gdown.download(id=file_id, output=str(part), quiet=False, resume=True)
    except (GdownError, requests.RequestException) as error:
        reason = " ".join(str(error).split())
        raise DownloadError(f"Google Drive file {file_id}: {reason}") from None


# --------------------------------------------------------------------------- archives

def check_archive(path: Path) -> None:
    """Raise DownloadError unless ``path`` is a complete zip or tar archive that stays inside
    the folder it is extracted to (no absolute paths, no ``..``, no links leading out)."""
    problem = sniff_content(path)
    if problem is not None:
        raise DownloadError(problem)
    if zipfile.is_zipfile(path):
        _check_zip(path)
    elif _starts_with(path, ZIP_MAGIC):
        raise DownloadError("incomplete zip archive: no central directory (truncated?)")
    elif tarfile.is_tarfile(path):
        _check_tar(path)
    else:
        raise DownloadError("not a zip or tar archive")


def extract_archive(path: Path, folder: Path) -> None:
    """Check ``path`` (see :func:`check_archive`), then extract it into ``folder``."""
    check_archive(path)
    folder.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            archive.extractall(folder)
    else:
        with tarfile.open(path) as archive:
            archive.extractall(folder, filter="data")


def _check_zip(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                is_link = stat.S_ISLNK(info.external_attr >> 16)
                link = archive.read(info).decode("utf-8", "replace") if is_link else None
                _check_member(info.filename, link, relative_to_member=True)
            damaged = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise DownloadError(f"not a complete zip archive ({error})") from None
    if damaged is not None:
        raise DownloadError(f"damaged zip archive: bad CRC in member '{damaged}'")


def _check_tar(path: Path) -> None:
    try:
        with tarfile.open(path) as archive:
            for member in archive:
                if member.issym() or member.islnk():
                    _check_member(member.name, member.linkname, relative_to_member=member.issym())
                elif member.isfile():
                    _check_member(member.name, None, relative_to_member=False)
                    _read_to_end(archive, member)
                elif member.isdir():
                    _check_member(member.name, None, relative_to_member=False)
                else:
                    raise DownloadError(f"unsafe archive: member '{member.name}' is a special file")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DownloadError(f"not a complete tar archive ({error})") from None


def _read_to_end(archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
    """Read a member's data so that a truncated archive shows up now, not half-way through extraction."""
    stream = archive.extractfile(member)
    size = 0
    while chunk := stream.read(CHUNK_SIZE):
        size += len(chunk)
    if size != member.size:
        raise DownloadError(f"truncated tar archive: member '{member.name}' has {size} of {member.size} bytes")


def _check_member(name: str, link: str | None, relative_to_member: bool) -> None:
    """Refuse a member whose path, or link target, leads outside the extraction folder."""
    path = name.replace("\\", "/")
    if path.startswith("/") or _WINDOWS_DRIVE.match(path):
        raise DownloadError(f"unsafe archive: member '{name}' has an absolute path")
    if ".." in path.split("/"):
        raise DownloadError(f"unsafe archive: member '{name}' has a '..' component")
    if link is None:
        return
    target = link.replace("\\", "/")
    base = posixpath.dirname(path) if relative_to_member else ""
    resolved = posixpath.normpath(posixpath.join(base, target))
    if target.startswith("/") or _WINDOWS_DRIVE.match(target) or resolved.split("/")[0] == "..":
        raise DownloadError(f"unsafe archive: member '{name}' links outside the archive (to '{link}')")

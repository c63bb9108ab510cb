"""Downloads: files served by a loopback HTTP mirror land verified, or not at all."""
from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import tarfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import network
from lib.download import DownloadError, check_archive, http_download, part_path
from pyscripts.tools import download
from spml.config import load_config


# --------------------------------------------------------------------------- loopback mirror

@dataclass
class Served:
    """One file of the mirror: ``path`` sent whole, or only its first ``send`` bytes while the
    headers still advertise the whole length; ``ranges`` says whether Range requests are honoured."""

    path: Path
    send: int | None = None
    ranges: bool = True


class MirrorHandler(http.server.BaseHTTPRequestHandler):
    timeout = 30

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Range")))
        served = self.server.files.get(self.path.lstrip("/"))
        if served is None:
            self.send_error(404)
            return
        size = served.path.stat().st_size
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        start = int(match.group(1)) if served.ranges and match else 0
        if start >= size > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        if served.ranges:
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        with open(served.path, "rb") as file:
            file.seek(start)
            remaining = size - start if served.send is None else max(served.send - start, 0)
            while remaining > 0 and (chunk := file.read(min(remaining, 1 << 20))):
                self.wfile.write(chunk)
                remaining -= len(chunk)
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def mirror_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MirrorHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def mirror(mirror_server):
    """``(url, files)``: put :class:`Served` entries into ``files`` under their mirror names."""
    mirror_server.files = {}
    mirror_server.requests = []
    return f"http://127.0.0.1:{mirror_server.server_port}", mirror_server.files


# --------------------------------------------------------------------------- served files

@pytest.fixture(scope="module")
def files_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="module")
def release_checkpoint(files_dir) -> Path:
    """A checkpoint in the release layout, written by the network package."""
    path = files_dir / "model-109249.pth"
    network.save_checkpoint(network.build_model(), path)
    return path


@pytest.fixture(scope="module")
def localvit_checkpoint(files_dir, reference_dir) -> Path:
    """A LocalViT-Swin ImageNet checkpoint with the entries and shapes of the real one."""
    state = {}
    for line in (reference_dir / "imagenet_checkpoint_keys.tsv").read_text().splitlines()[1:]:
        key, shape = line.split("\t")
        if shape == "scalar":
            state[key] = torch.tensor(0)
        else:
            dtype = torch.int64 if key.endswith("relative_position_index") else torch.float32
            state[key] = torch.zeros([int(size) for size in shape.split("x")], dtype=dtype)
    path = files_dir / "localvit_swin.pth"
    torch.save({"model": state}, path)
    return path


@pytest.fixture(scope="module")
def html_page(files_dir) -> Path:
    path = files_dir / "warning.html"
    path.write_text("<!DOCTYPE html><html><body>Google Drive can't scan this file for viruses.</body></html>")
    return path


def _image(suffix: str) -> bytes:
    return cv2.imencode(suffix, np.full((8, 8), 128, np.uint8))[1].tobytes()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _dataset_members(top: str) -> dict[str, bytes]:
    """A two-sample release-layout dataset below ``top`` (e.g. ``sod/`` or ``release/sod/``)."""
    members = {}
    for stem in ("a", "b"):
        for folder, suffix in (("RGB_Train", ".jpg"), ("Depth_Train", ".bmp"), ("scribble_tip", ".png"),
                               ("hed", ".jpg"), ("contours_sum", ".png")):
            members[f"{top}{folder}/{stem}{suffix}"] = _image(suffix)
        for folder, suffix in (("RGB", ".jpg"), ("depth", ".png"), ("GT", ".png")):
            members[f"{top}Test/NJU2K/{folder}/{stem}{suffix}"] = _image(suffix)
    return members


def _run(root: Path, url: str, *items: str) -> int:
    return download.main([*items, "--mirror", url, "--root", str(root)])


def _tree(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*")) if root.exists() else []


# --------------------------------------------------------------------------- checkpoints

def test_model_lands_with_its_config_and_a_second_run_skips(tmp_path, mirror, mirror_server,
                                                            release_checkpoint, capsys):
    url, files = mirror
    files["model-109249.pth"] = Served(release_checkpoint)
    layout = download.Layout(tmp_path)
    assert _run(tmp_path, url, "model") == 0
    assert layout.model.read_bytes() == release_checkpoint.read_bytes()
    assert layout.model.parent.name == "stage1" and layout.model.is_relative_to(tmp_path / "snapshots")
    config = load_config(layout.snapshot_dir / "config_sod_emb.yaml")
    assert Path(config.dataset.data_dir) == tmp_path / "dataroot"
    assert not part_path(layout.model).exists()
    requests_after_first_run = len(mirror_server.requests)
    capsys.readouterr()

    assert _run(tmp_path, url, "model") == 0
    assert "already in place and valid" in capsys.readouterr().out
    assert len(mirror_server.requests) == requests_after_first_run


def test_localvit_lands_while_a_failing_item_is_reported(tmp_path, mirror, localvit_checkpoint, html_page,
                                                         capsys, monkeypatch):
    url, files = mirror
    files["localvit_swin.pth"] = Served(localvit_checkpoint)
    files["model-109249.pth"] = Served(html_page)
    monkeypatch.setenv(download.MIRROR_ENV, url)
    assert download.main(["model", "localvit", "--root", str(tmp_path)]) == 1
    assert download.Layout(tmp_path).localvit.read_bytes() == localvit_checkpoint.read_bytes()
    failures = [line for line in capsys.readouterr().err.splitlines() if "FAILED" in line]
    assert [line.split(":")[0] for line in failures] == ["model"]


def test_a_bad_file_in_place_is_downloaded_again_and_replaced(tmp_path, mirror, release_checkpoint, capsys):
    url, files = mirror
    files["model-109249.pth"] = Served(release_checkpoint)
    layout = download.Layout(tmp_path)
    layout.model.parent.mkdir(parents=True)
    layout.model.write_bytes(b"not a checkpoint")
    assert _run(tmp_path, url, "model") == 0
    assert f"{layout.model} is there but fails the check (" in capsys.readouterr().err
    assert layout.model.read_bytes() == release_checkpoint.read_bytes()


def test_a_bad_folder_in_place_is_left_alone_and_named(tmp_path, mirror, capsys):
    url, files = mirror
    files["dataset.zip"] = Served(_zip(tmp_path / "dataset.zip", _dataset_members("sod/")))
    unpacked = tmp_path / "root" / "dataroot" / "sod"
    unpacked.mkdir(parents=True)
    (unpacked / "notes.txt").write_text("mine")
    assert _run(tmp_path / "root", url, "dataset") == 1
    failure, = [line for line in capsys.readouterr().err.splitlines() if "FAILED" in line]
    assert failure.startswith(f"dataset: FAILED: {unpacked} is there but fails the check (")
    assert failure.endswith("move it away to download it again")
    assert _tree(tmp_path / "root") == ["dataroot", "dataroot/sod", "dataroot/sod/notes.txt"]


@pytest.mark.parametrize("served, reason", [
    (lambda files: Served(files["html"]), "HTML page"),
    (lambda files: Served(files["model"], send=files["model"].stat().st_size // 2, ranges=False),
     "truncated: "),
    (lambda files: Served(files["localvit"]), "checkpoint rejected"),
], ids=["html", "truncated", "wrong-layout"])
def test_a_bad_model_file_is_rejected_and_leaves_nothing(tmp_path, mirror, release_checkpoint,
                                                         localvit_checkpoint, html_page, capsys, served, reason):
    url, files = mirror
    files["model-109249.pth"] = served({"html": html_page, "model": release_checkpoint,
                                        "localvit": localvit_checkpoint})
    assert _run(tmp_path, url, "model") == 1
    failures = [line for line in capsys.readouterr().err.splitlines() if "FAILED" in line]
    assert len(failures) == 1 and failures[0].startswith("model: FAILED") and reason in failures[0]
    assert _tree(tmp_path) == []


def test_an_interrupted_download_resumes_with_a_range_request(tmp_path, mirror, mirror_server,
                                                             release_checkpoint, capsys):
    url, files = mirror
    half = release_checkpoint.stat().st_size // 2
    files["model-109249.pth"] = Served(release_checkpoint, send=half)
    assert _run(tmp_path, url, "model") == 1
    assert "truncated: " in capsys.readouterr().err
    layout = download.Layout(tmp_path)
    assert part_path(layout.model).stat().st_size == half and not layout.model.exists()

    files["model-109249.pth"] = Served(release_checkpoint)
    assert _run(tmp_path, url, "model") == 0
    assert mirror_server.requests[-1] == ("/model-109249.pth", f"bytes={half}-")
    assert layout.model.read_bytes() == release_checkpoint.read_bytes()


# --------------------------------------------------------------------------- HTTP restarts

@pytest.mark.parametrize("part_bytes, ranges", [(b"stale bytes", False), (b"x" * 5000, True)],
                         ids=["server-ignores-range", "part-longer-than-file"])
def test_an_unusable_part_restarts_from_scratch(tmp_path, mirror, part_bytes, ranges):
    url, files = mirror
    payload = tmp_path / "payload.bin"
    payload.write_bytes(bytes(range(256)) * 10)
    files["payload.bin"] = Served(payload, ranges=ranges)
    part = tmp_path / "out" / "payload.bin.part"
    part.parent.mkdir()
    part.write_bytes(part_bytes)
    http_download(f"{url}/payload.bin", part)
    assert part.read_bytes() == payload.read_bytes()


def test_an_http_error_names_the_status(tmp_path, mirror):
    url, _ = mirror
    with pytest.raises(DownloadError, match="HTTP 404"):
        http_download(f"{url}/missing.pth", tmp_path / "missing.pth.part")


# --------------------------------------------------------------------------- archives

def _tar_with_link(path: Path, name: str, target: str) -> Path:
    with tarfile.open(path, "w") as archive:
        link = tarfile.TarInfo(name)
        link.type, link.linkname = tarfile.SYMTYPE, target
        archive.addfile(link)
    return path


@pytest.mark.parametrize("make, member", [
    (lambda path: _zip(path, {"results/ok.png": b"x", "results/../../evil.png": b"x"}), "results/../../evil.png"),
    (lambda path: _zip(path, {"/tmp/evil.png": b"x"}), "/tmp/evil.png"),
    (lambda path: _tar_with_link(path, "results/link", "../../outside"), "results/link"),
], ids=["dotdot", "absolute", "escaping-symlink"])
def test_an_archive_leading_outside_is_refused_naming_the_member(tmp_path, make, member):
    with pytest.raises(DownloadError, match=re.escape(f"'{member}'")):
        check_archive(make(tmp_path / "archive"))


def test_a_truncated_zip_is_rejected(tmp_path):
    whole = _zip(tmp_path / "whole.zip", _dataset_members("sod/")).read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DownloadError, match="incomplete zip"):
        check_archive(truncated)


def test_results_with_a_dotdot_member_are_refused_and_nothing_is_written(tmp_path, mirror, capsys):
    url, files = mirror
    root = tmp_path / "root"
    files["results.zip"] = Served(_zip(tmp_path / "results.zip", {"NJU2K/a.png": b"x", "../evil.png": b"x"}))
    assert _run(root, url, "results") == 1
    assert "'../evil.png'" in capsys.readouterr().err
    assert _tree(root) == [] and not (tmp_path / "evil.png").exists()


@pytest.mark.parametrize("top", ["sod/", "DHFR_dataset/sod/"])
def test_the_dataset_is_unpacked_under_dataroot_and_listed(tmp_path, mirror, top, capsys):
    url, files = mirror
    root = tmp_path / "root"
    files["dataset.zip"] = Served(_zip(tmp_path / "dataset.zip", _dataset_members(top)))
    assert _run(root, url, "dataset") == 0
    data_root = root / "dataroot"
    assert sorted(path.name for path in (data_root / "sod" / "RGB_Train").iterdir()) == ["a.jpg", "b.jpg"]
    assert len((data_root / "lists" / "train.txt").read_text().splitlines()) == 2
    assert sorted(path.name for path in (data_root / "lists").iterdir()) == ["train.txt"], "test sets are scanned"
    assert sorted(path.name for path in data_root.iterdir()) == ["lists", "sod"]
    capsys.readouterr()
    assert _run(root, url, "dataset") == 0
    assert capsys.readouterr().out.startswith("dataset: skipped")


@pytest.mark.slow  # the shell launcher in a subprocess
def test_results_land_through_the_shell_launcher(tmp_path, mirror, repo_root):
    url, files = mirror
    root = tmp_path / "root"
    files["results.zip"] = Served(_zip(tmp_path / "results.zip", {"DHFR/NJU2K/a.png": _image(".png")}))
    launcher = repo_root / "bashscripts" / "download_snapshots.sh"
    environment = {**os.environ, "PYTHON": sys.executable}
    environment.pop(download.MIRROR_ENV, None)
    # Started elsewhere, with --root relative to that folder.
    finished = subprocess.run(["bash", str(launcher), "results", "--mirror", url, "--root", "root"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, env=environment)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.startswith("results: downloaded")
    assert _tree(root / "snapshots") == ["released_results", "released_results/NJU2K",
                                         "released_results/NJU2K/a.png"]


# --------------------------------------------------------------------------- local mirrors, modes

@pytest.mark.parametrize("as_url", [False, True], ids=["folder", "file-url"])
def test_a_local_folder_or_file_url_is_a_mirror(tmp_path, release_checkpoint, as_url, capsys):
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "model-109249.pth").write_bytes(release_checkpoint.read_bytes())
    mirror = folder.as_uri() if as_url else str(folder)
    root = tmp_path / "root"
    assert download.main(["model", "--mirror", mirror, "--root", str(root)]) == 0
    assert download.Layout(root).model.read_bytes() == release_checkpoint.read_bytes()
    assert download.main(["localvit", "--mirror", mirror, "--root", str(root)]) == 1
    failure = capsys.readouterr().err.strip().splitlines()
    assert failure == [f"localvit: FAILED: not found in the mirror folder: {folder / 'localvit_swin.pth'}"]
    assert not download.Layout(root).localvit.parent.exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o027, 0o750)])
def test_created_folders_follow_the_umask(tmp_path, umask, mode):
    folder = tmp_path / "mirror"
    folder.mkdir()
    _zip(folder / "results.zip", {"NJU2K/a.png": _image(".png")})  # no wrapper: the scratch folder is placed
    root = tmp_path / "root"
    old = os.umask(umask)
    try:
        assert download.main(["results", "--mirror", str(folder), "--root", str(root)]) == 0
    finally:
        os.umask(old)
    results = download.Layout(root).results
    for path in (results, results / "NJU2K", results.parent):
        assert path.stat().st_mode & 0o777 == mode, path

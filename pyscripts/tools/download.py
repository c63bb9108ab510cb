"""Download the release's weights, data and results into the places the scripts expect.

Items (default: all of them), placed under ``--root`` (default: the repository root):

- ``localvit``: LocalViT-Swin ImageNet weights -> ``snapshots/localvit/localvit_swin.pth``
- ``model``: trained DHFR weights -> ``<release snapshot dir>/stage1/model-109249.pth``, and the
  release config filled for this root beside it as ``<release snapshot dir>/config_sod_emb.yaml``
- ``dataset``: training and test data -> ``dataroot/sod/...``, then the list files
  ``dataroot/lists/`` (spml.data.lists)
- ``results``: the released saliency maps -> ``snapshots/released_results/``

Files come from Google Drive (gdown) or, with ``--mirror URL`` / ``$DHFR_MIRROR``, from
``URL/localvit_swin.pth``, ``URL/model-109249.pth``, ``URL/dataset.zip``, ``URL/results.zip``;
``URL`` may be HTTP(S), a ``file://`` URL or a local folder. Created folders follow the umask.
Every file is verified before it is put in place (checkpoints must load into the network,
archives must be complete and stay inside their folder); an item already in place and valid
is skipped. Exit status 0 only when every requested item is in place; otherwise one line per
failed item says why.
"""
from __future__ import annotations

import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import argparse
import contextlib
import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from torch import nn

import network
from lib.interrupts import exit_status
from lib.io import current_umask
from lib.download import (DownloadError, copy_download, extract_archive, gdrive_download, http_download,
                          local_folder, part_path, sniff_content)
from spml.config import TEST_SETS, default_config, save_config
from spml.training.layout import CONFIG_NAME, IMAGENET_WEIGHTS, release_checkpoint, release_snapshot_dir
from spml.data import DataError
from spml.data.lists import ensure_train_list, scan_test_sets, scan_train_samples

REPO_ROOT = Path(__file__).resolve().parents[2]
MIRROR_ENV = "DHFR_MIRROR"


@dataclass(frozen=True)
class Layout:
    """Where each item goes under ``root``."""

    root: Path

    @property
    def localvit(self) -> Path:
        return self.root / IMAGENET_WEIGHTS

    @property
    def snapshot_dir(self) -> Path:
        return release_snapshot_dir(default_config(), self.root / "snapshots")

    @property
    def model(self) -> Path:
        return release_checkpoint(self.root / "snapshots")

    @property
    def data_root(self) -> Path:
        return self.root / "dataroot"

    @property
    def results(self) -> Path:
        return self.root / "snapshots" / "released_results"


@dataclass(frozen=True)
class Source:
    """Where an item's file is fetched from: Google Drive, or ``<mirror>/<mirror_name>``."""

    gdrive_id: str
    mirror_name: str

    def fetch(self, part: Path, mirror: str | None) -> None:
        if not mirror:
            gdrive_download(self.gdrive_id, part)
        elif (folder := local_folder(mirror)) is not None:
            copy_download(folder / self.mirror_name, part)
        else:
            http_download(f"{mirror.rstrip('/')}/{self.mirror_name}", part)


SOURCES = {
    "localvit": Source("11M6C4xWr_afAuLuNkY0FZkSMtatae6q-", "localvit_swin.pth"),
    "model": Source("1F7tjedI0mxuMDHCpWunQQjCQKXSPZLiM", "model-109249.pth"),
    "dataset": Source("1T8oMBb12cLPaIegwzxOnkp729FmRqug0", "dataset.zip"),
    "results": Source("1FQgkthgL54eaq7JRSS0TraPJkVWmycQI", "results.zip"),
}


# --------------------------------------------------------------------------- verification

@functools.lru_cache(maxsize=1)
def _scratch_model() -> nn.Module:
    """One network to load candidate checkpoints into (building it costs about a second)."""
    return network.build_model()


def _verify_checkpoint(path: Path, load: Callable[[nn.Module, Path], object]) -> None:
    """Raise DownloadError unless ``load(model, path)`` accepts the file."""
    problem = sniff_content(path)
    if problem is not None:
        raise DownloadError(problem)
    try:
        load(_scratch_model(), path)
    except network.CheckpointError as error:
        raise DownloadError(f"checkpoint rejected: {error}") from None


def verify_model(path: Path) -> None:
    """The released DHFR checkpoint must load strictly (docs/method.md §1.8)."""
    _verify_checkpoint(path, network.load_checkpoint)


def verify_localvit(path: Path) -> None:
    """The LocalViT-Swin ImageNet checkpoint must fill the ImageNet map (docs/method.md §1.8)."""
    _verify_checkpoint(path, network.init_from_imagenet)


def verify_dataset(data_root: Path) -> None:
    """``data_root/sod`` must hold paired training samples and at least one test set (docs/method.md §3.1)."""
    try:
        scan_train_samples(data_root)
        if not scan_test_sets(data_root):
            raise DownloadError(f"no test set (folder with RGB/ and depth/) under {data_root / 'sod' / 'Test'}")
    except DataError as error:
        raise DownloadError(str(error)) from None


def verify_results(folder: Path) -> None:
    """The released results must hold saliency maps (PNG files)."""
    if next(folder.rglob("*.png"), None) is None:
        raise DownloadError(f"no PNG saliency map under {folder}")


# --------------------------------------------------------------------------- placing

@contextlib.contextmanager
def _tidy_on_failure(folder: Path) -> Iterator[None]:
    """If the block raises, remove the folders it created on the way to ``folder`` that are still empty."""
    created = []
    for path in [folder, *folder.parents]:
        if path.exists():
            break
        created.append(path)
    try:
        yield
    except BaseException:
        for path in created:
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        raise


def install_file(destination: Path, source: Source, mirror: str | None,
                 verify: Callable[[Path], None]) -> str:
    """Download to ``<destination>.part``, verify, rename into place; skip a valid file already there."""
    if destination.exists():
        try:
            verify(destination)
            return f"skipped, already in place and valid: {destination}"
        except DownloadError as error:
            print(f"{destination} is there but fails the check ({error}); downloading it again "
                  f"(it is replaced only by a copy that passes)", file=sys.stderr)
    part = part_path(destination)
    with _tidy_on_failure(destination.parent):
        source.fetch(part, mirror)
        try:
            verify(part)
        except DownloadError:
            part.unlink()
            raise
        os.replace(part, destination)
    return f"downloaded and verified: {destination}"


def install_archive(destination: Path, source: Source, mirror: str | None,
                    unpacked_content: Callable[[Path], Path], verify: Callable[[Path], None]) -> str:
    """Download an archive next to ``destination``, extract it into a temporary folder, find the
    folder to place with ``unpacked_content(extraction folder)``, verify it with ``verify`` and
    rename it to ``destination``. An existing ``destination`` is never overwritten."""
    if destination.exists():
        try:
            verify(destination)
        except DownloadError as error:
            raise DownloadError(f"{destination} is there but fails the check ({error}); "
                                "move it away to download it again") from None
        return f"skipped, already in place and valid: {destination}"
    part = part_path(destination.with_name(source.mirror_name))
    with _tidy_on_failure(destination.parent):
        source.fetch(part, mirror)
        with tempfile.TemporaryDirectory(dir=destination.parent, prefix=f".{destination.name}.") as scratch:
            try:
                extract_archive(part, Path(scratch))
                content = unpacked_content(Path(scratch))
                verify(content)
            except DownloadError:
                part.unlink()
                raise
            os.rename(content, destination)
            os.chmod(destination, 0o777 & ~current_umask())  # the scratch folder was made 0700
        part.unlink()
    return f"downloaded, verified and unpacked: {destination}"


def _only_subfolder(folder: Path) -> Path | None:
    entries = list(folder.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else None


def dataset_content(scratch: Path) -> Path:
    """The data root inside an unpacked dataset archive: the folder holding ``sod/``.

    The archive's top folder may be ``sod/`` itself or a folder containing it.
    """
    for candidate in (scratch, _only_subfolder(scratch)):
        if candidate is not None and (candidate / "sod").is_dir():
            return candidate
    top = sorted(path.name for path in scratch.iterdir())
    raise DownloadError(f"dataset archive has no sod/ folder at its top or one level down (top: {top})")


def results_content(scratch: Path) -> Path:
    """The folder of released results: the archive's single top folder is dropped, unless it
    is a test set's own folder."""
    wrapper = _only_subfolder(scratch)
    return wrapper if wrapper is not None and wrapper.name not in TEST_SETS else scratch


# --------------------------------------------------------------------------- items

def install_localvit(layout: Layout, mirror: str | None) -> str:
    return install_file(layout.localvit, SOURCES["localvit"], mirror, verify_localvit)


def install_model(layout: Layout, mirror: str | None) -> str:
    """The released checkpoint, plus the release config filled for this root (if absent)."""
    message = install_file(layout.model, SOURCES["model"], mirror, verify_model)
    config_path = layout.snapshot_dir / CONFIG_NAME
    if not config_path.exists():
        config = default_config()
        config.dataset.data_dir = str(layout.data_root)
        config.train.pretrained = str(layout.localvit)
        config.train.snapshot_dir = str(layout.snapshot_dir)
        save_config(config, config_path)
        message += f"; wrote {config_path}"
    return message


def install_dataset(layout: Layout, mirror: str | None) -> str:
    """The data under ``dataroot/sod``, then the training list ``dataroot/lists/train.txt``."""
    sod = layout.data_root / "sod"
    message = install_archive(sod, SOURCES["dataset"], mirror,
                              unpacked_content=lambda scratch: dataset_content(scratch) / "sod",
                              verify=lambda folder: verify_dataset(folder.parent))
    try:
        train_list = ensure_train_list(layout.data_root)
    except DataError as error:
        raise DownloadError(f"cannot build the training list: {error}") from None
    return f"{message}; training list {train_list}"


def install_results(layout: Layout, mirror: str | None) -> str:
    return install_archive(layout.results, SOURCES["results"], mirror, results_content, verify_results)


ITEMS: dict[str, Callable[[Layout, str | None], str]] = {
    "localvit": install_localvit,
    "model": install_model,
    "dataset": install_dataset,
    "results": install_results,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("items", nargs="*", metavar="ITEM",
                        help=f"what to download, any of {', '.join(ITEMS)} (default: all)")
    parser.add_argument("--mirror", default=os.environ.get(MIRROR_ENV) or None,
                        help=f"fetch from this HTTP(S) URL, file:// URL or local folder instead of Google Drive "
                             f"(default: ${MIRROR_ENV})")
    parser.add_argument("--root", type=Path, default=REPO_ROOT,
                        help="place everything under this folder (default: the repository root)")
    args = parser.parse_args(argv)
    unknown = [item for item in args.items if item not in ITEMS]
    if unknown:
        parser.error(f"unknown item(s) {', '.join(unknown)}; choose from {', '.join(ITEMS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    layout = Layout(args.root.resolve())
    failed = 0
    for name in dict.fromkeys(args.items or ITEMS):
        try:
            print(f"{name}: {ITEMS[name](layout, args.mirror)}", flush=True)
        except (DownloadError, OSError) as error:
            failed += 1
            print(f"{name}: FAILED: {' '.join(str(error).split())}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(exit_status(main, "download.py"))

"""Fill the config template with ``section.key=value`` overrides and write it into the
snapshot directory (docs/method.md §4: the directory is named after the hyper-parameters).

    python pyscripts/tools/fill_config.py [--template T] [--snapshot-dir DIR] section.key=value ...

Writes ``<snapshot dir>/config.yaml`` atomically (with ``train.snapshot_dir`` set to the
directory) and prints the snapshot directory on stdout.
"""
from __future__ import annotations

import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import argparse
from pathlib import Path

from spml.config import ConfigError, apply_overrides, load_config, release_snapshot_dir, save_config

CONFIG_NAME = "config.yaml"


def fill_config(template: Path, overrides: list[str], snapshot_dir: Path | None = None) -> Path:
    """Write the filled config to ``<snapshot dir>/config.yaml``; return the snapshot dir.

    ``snapshot_dir`` defaults to :func:`spml.config.release_snapshot_dir` of the filled config.
    """
    config = apply_overrides(load_config(template), overrides)
    if snapshot_dir is None:
        snapshot_dir = release_snapshot_dir(config)
    config.train.snapshot_dir = str(snapshot_dir)
    save_config(config, snapshot_dir / CONFIG_NAME)
    return snapshot_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    parser.add_argument("--template", type=Path, default=Path("configs/sod_template.yaml"))
    parser.add_argument("--snapshot-dir", type=Path, default=None,
                        help="snapshot directory (default: named after the hyper-parameters)")
    args = parser.parse_args(argv)
    try:
        snapshot_dir = fill_config(args.template, args.overrides, args.snapshot_dir)
    except (ConfigError, OSError) as error:
        print(f"fill_config: {error}", file=sys.stderr)
        return 2
    print(snapshot_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())

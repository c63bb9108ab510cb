#!/usr/bin/env bash
# Download the release's files into place: bash bashscripts/download_snapshots.sh [ITEM...] [--mirror URL] [--root DIR]
# Items: localvit model dataset results (no item = all). See pyscripts/tools/download.py.
# Relative --mirror and --root paths are taken from the folder it is started in.
set -euo pipefail
exec "${PYTHON:-python3}" "$(dirname "${BASH_SOURCE[0]}")/../pyscripts/tools/download.py" "$@"

#!/usr/bin/env bash
# Download the release's files into place: bash bashscripts/download_snapshots.sh [ITEM...] [--mirror URL] [--root DIR]
# Items: localvit model dataset results (no item = all). See pyscripts/tools/download.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${PYTHON:-python3}" pyscripts/tools/download.py "$@"

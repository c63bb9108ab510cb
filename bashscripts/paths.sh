#!/usr/bin/env bash
# Shared by the launchers: source it before moving to the repository root.
#   source "$(dirname "$0")/paths.sh"; absolute_paths VAR...; cd "$REPO_ROOT"
# Leaves REPO_ROOT defined. absolute_paths makes each named variable that holds a relative path
# absolute, relative to the folder the launcher was started from. Started from the repository
# root they stay as written (same meaning), as do unset variables and the value "none".
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

absolute_paths() {
  local name value
  if [ "$PWD" = "$REPO_ROOT" ]; then return 0; fi
  for name in "$@"; do
    value=${!name:-}
    if [ -n "$value" ] && [ "$value" != none ] && [[ "$value" != /* ]]; then
      export "$name=$PWD/$value"
    fi
  done
}

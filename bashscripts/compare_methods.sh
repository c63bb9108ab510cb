#!/usr/bin/env bash
# Compare methods' saliency maps on the same test sets (see pyscripts/benchmark/compare_methods.py).
#   bashscripts/compare_methods.sh --method NAME[:SET]=DIR [--method ...] [--sets SET ...] [--per-image]
# DIR holds <SET>/<stem>.png (with :SET, that set's <stem>.png). Environment (used when the option is not given):
#   GT_ROOT  ground truth, <SET>/GT or sod/Test/<SET>/GT   (default: dataroot)
#   OUT_DIR  output folder                                 (default: snapshots/comparison)
# Example, the released maps against one's own test-score maps:
#   bash bashscripts/compare_methods.sh --method DHFR-release=snapshots/released_results \
#     --method mine=results/<run folder name>/model-109249_field/results
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
args=("$@")
case " $* " in *" --gt-root "*|*" --gt-root="*) ;; *) args+=(--gt-root "${GT_ROOT:-$repo/dataroot}") ;; esac
case " $* " in *" --out "*|*" --out="*) ;; *) args+=(--out "${OUT_DIR:-$repo/snapshots/comparison}") ;; esac
exec "$PYTHON" "$repo/pyscripts/benchmark/compare_methods.py" "${args[@]}"

#!/usr/bin/env bash
# Times what a newcomer runs on a fresh clone: `make install` (package downloads and installs),
# `make book` (demo profile) and `make test`, each separately. Results go in
# book/performance.md.
# Usage: benchmarks/time_fresh_clone.sh [--cold] [TARGET ...]
#   --cold   ignore pip's cache, so that every package is downloaded
#   TARGET   make targets to time, in order (default: install book test)
set -euo pipefail
source_repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'echo "logs kept in $work"' EXIT
if [[ "${1:-}" == "--cold" ]]; then export PIP_NO_CACHE_DIR=1; shift; fi
targets=("$@")
[[ $# -gt 0 ]] || targets=(install book test)
git clone --quiet "$source_repo" "$work/clone"
ln -s "$source_repo/../shared" "$work/shared" 2>/dev/null || true
cd "$work/clone"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -m), commit $(git rev-parse --short HEAD)"
for target in "${targets[@]}"; do
    started=$(date +%s)
    if make "$target" > "$work/$target.log" 2>&1; then status=ok; else status=FAILED; fi
    echo "make $target: $(( $(date +%s) - started )) s ($status, log $work/$target.log)"
    [[ $status == ok ]] || exit 1
done
[[ ! -f "$work/test.log" ]] || tail -n 1 "$work/test.log"

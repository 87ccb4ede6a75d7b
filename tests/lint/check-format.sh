#!/usr/bin/env bash
# Every tracked C file follows the repository's .clang-format (clang-format 14 from Debian).
# Skipped (exit 77, reported loudly) when clang-format or git metadata is unavailable.
set -uo pipefail
cd "$1" || exit 1
if ! command -v clang-format >/dev/null; then
    echo "*** SKIPPED format: clang-format is not installed (scripts/deps.sh installs it) ***"
    exit 77
fi
files=$(git ls-files '*.c' '*.h' 2>/dev/null) || {
    echo "*** SKIPPED format: not a git checkout, no list of tracked files ***"
    exit 77
}
if ! clang-format --dry-run --Werror $files; then
    echo "format: run 'make format' (clang-format -i on the tracked C files) and commit"
    exit 1
fi
echo "format: $(echo "$files" | wc -l) files follow .clang-format"

#!/usr/bin/env bash
# Codec throughput vs memcpy in the same run (issue targets: >= 1 GB/s and >= 0.3x memcpy bulk;
# 10 000 connector-like structs in < 1 ms).
set -euo pipefail
"${1:-build}/bench/bench-codec"

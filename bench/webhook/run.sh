#!/usr/bin/env bash
# Admission webhook benchmark: Outrigger's injector vs a floor handler on the same TLS server, in one run.
# Results and how to read them: docs/performance.md. Flags pass through (e.g. -rate 2000 -duration 20s).
set -euo pipefail
cd "$(dirname "$0")/../.."
go run ./bench/webhook "$@"

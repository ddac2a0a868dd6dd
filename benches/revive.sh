#!/usr/bin/env bash
# Benchmark of a revive: one live pass over a control-plane node whose certificates all
# expired (14 targets), on the test edges (systemd restarts recorded, probes answered
# from disk, a fake clock that records every wait), against the same node with every
# certificate due but valid and healthy. Prints the pass's own work (wall time, median
# of 5 runs) and what it waits between control-plane restarts. Goal from issue 12: a
# revive in under 30 s (it was 61 s: two 30 s gaps and the work). The real restart
# durations add to the work; they are not the agent's and are not simulated here.
# revive_locked (issue 18): the same all-expired node under the packaged defaults with
# the restart lock in the node's own etcd (tests/lock_revive.rs: a lock that answers as
# that etcd does, a node id whose spread delay is over 30 s); goal < 30 s too.
# Results: docs/performance.md. Run from the repo root: benches/revive.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --features failpoints --test restarts --test lock_revive --no-run --quiet 2>/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in 1 2 3; do
	cargo test --release --features failpoints --quiet --test restarts -- \
		an_all_expired_node_revives_in_one_pass_without_waiting a_healthy_control_plane_keeps_its_gaps \
		--nocapture --test-threads 1 2>&1 | grep -oE '(revive|healthy): .*' >>"$tmp/runs"
	cargo test --release --features failpoints --quiet --test lock_revive -- \
		an_all_expired_control_plane_node_revives_in_under_30_s_under_the_lock \
		--nocapture --test-threads 1 2>&1 | grep -oE 'revive_locked: .*' >>"$tmp/runs"
done
python3 - "$tmp/runs" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+): (\d+) certificates renewed, (\d+) restarts, pass work (\d+) ms, slept ([\d.]+) s", line)
    if m:
        runs.setdefault(m[1], []).append((int(m[2]), int(m[3]), int(m[4]), float(m[5])))
ok = True
for name, rs in runs.items():
    work = statistics.median(r[2] for r in rs)
    slept = max(r[3] for r in rs)
    total = work / 1000 + slept
    goal = ""
    if name in ("revive", "revive_locked"):
        ok = ok and total < 30
        goal = f" (goal < 30 s: {'met' if ok else 'MISSED'})"
    print(f"{name}: {rs[0][0]} renewed, {rs[0][1]} restarts, work median {work:.0f} ms, waits {slept:.0f} s, total {total:.1f} s{goal}")
sys.exit(0 if ok and "revive" in runs else 1)
PY

#!/usr/bin/env bash
# Fleet simulation (examples/fleet_sim): 1,000 kubeadm clusters of 3 control-plane nodes
# and 50 workers over 10 years of daily timers, with the shipped timer, window and [run]
# limits, without and with the cross-node lock, with the kubelet client certificate
# renewed at 80% (shipped) or left to the kubelet (safety net at 90%). Then a
# sensitivity sweep (kube-apiserver downtime, join spread, RandomizedDelaySec, probe
# failures, outages) and the model's checks. Results: docs/performance.md, "Fleet
# simulation". Run from anywhere: benches/fleet-sim.sh
#
# Exit 0 when every check holds, 1 when one fails, 2 when it cannot run.
# Knobs: FLEET_ARGS="..." extra arguments for the default run (e.g. --clusters 200);
# FLEET_SWEEP=0 skips the sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "needs cargo" >&2; exit 2; }
cargo build --release --quiet --example fleet_sim || exit 2
sim=$PWD/target/release/examples/fleet_sim

echo "== machine"
echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "os: $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
echo "rustc: $(rustc --version)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

fail=0
check() { # check WHAT COMMAND...: runs a test command, reports, remembers a failure
	local what=$1
	shift
	if "$@"; then echo "check ok: $what"; else echo "CHECK FAILED: $what"; fail=1; fi
}
field() { # field SCENARIO KEY FILE: a RESULT value
	grep "^RESULT scenario=$1 " "$3" | tr ' ' '\n' | sed -n "s/^$2=//p"
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo
echo "== default run"
# shellcheck disable=SC2086
/usr/bin/time -f 'default run: %e s wall, %U s user' "$sim" --check ${FLEET_ARGS:-} | tee "$tmp/default" || fail=1
check "without the lock, the model sees two healthy kube-apiservers down at once (the detector works)" \
	awk -v p="$(field nolock-window p_healthy "$tmp/default")" 'BEGIN { exit !(p > 0) }'
check "with the lock, never two healthy kube-apiservers down at once" \
	test "$(field lock-window pairs_healthy "$tmp/default")" = 0
check "with the lock and the safety net, never two healthy kube-apiservers down at once" \
	test "$(field lock-safety pairs_healthy "$tmp/default")" = 0

echo
echo "== without outages: the exemption never fires, the safety net never renews a client certificate"
"$sim" --check --outage-rate 0 --workers 10 --scenarios nolock-safety,lock-safety,lock-window | tee "$tmp/nooutage" | grep RESULT || fail=1
check "with the lock and no outage, no overlap of any kind" \
	awk -v p="$(field lock-window p_any "$tmp/nooutage")" -v q="$(field lock-window p_any_ca_year "$tmp/nooutage")" 'BEGIN { exit !(p == 0 && q == 0) }'
check "safety net, no outage: the agent renews no kubelet client certificate" \
	awk -v a="$(field lock-safety agent_client_cp "$tmp/nooutage")" -v b="$(field lock-safety agent_client_worker "$tmp/nooutage")" 'BEGIN { exit !(a == 0 && b == 0) }'

if [[ ${FLEET_SWEEP:-1} != 0 ]]; then
	# Workers do not restart kube-apiservers: the sweep runs without them (10x faster).
	echo
	echo "== sweep: kube-apiserver downtime per restart (s)"
	for d in 10 30 60 120 300; do
		"$sim" --brief --workers 0 --scenarios nolock-window,lock-window --apiserver-down-s "$d" | grep -v '^RESULT'
	done
	echo
	echo "== sweep: control-plane join spread (max minutes between two joins)"
	for j in 10 120 720 4320; do
		"$sim" --brief --workers 0 --scenarios nolock-window --join-gap-max-min "$j" | grep -v '^RESULT'
	done
	echo
	echo "== sweep: RandomizedDelaySec (s); 0 = every node at midnight"
	for r in 0 600 3600 14400; do
		echo "RandomizedDelaySec=$r:"
		"$sim" --brief --workers 0 --scenarios nolock-window --randomized-delay-s "$r" | grep -v '^RESULT'
	done
	echo
	echo "== sweep: exemption path (probe failures at restart, outages per cluster-year)"
	for args in "--probe-fail 0.01" "--probe-fail 0.1" "--outage-rate 0.1" "--outage-rate 0.1 --exempt-spread-s 60"; do
		echo "$args:"
		# shellcheck disable=SC2086
		"$sim" --workers 0 --scenarios lock-window $args --check | grep '^RESULT' | tr ' ' '\n' |
			grep -E '^(p_any|p_healthy|p_healthy_broken|p_broken|pairs_healthy|broken_restarts|outages)=' | paste -sd' ' || fail=1
	done
fi

echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ $fail == 0 ]]; then echo "all checks hold"; else echo "a check failed"; fi
exit "$fail"

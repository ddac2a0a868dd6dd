#!/bin/bash
# tests/e2e/restart_selftest.sh - checks cert_rotator::restart::SystemdManager on a
# booted systemd: boots the e2e container (lib.sh), runs examples/restart_unit
# inside against test units and checks that
#   - a running Type=simple unit is restarted: result done, a new InvocationID that
#     systemctl agrees with, the unit active;
#   - a stopped unit is started the same way (no old InvocationID);
#   - a unit whose start fails is reported with the job result "failed";
#   - a unit that never becomes ready is reported as a timeout;
#   - a nonexistent unit is a "no such unit" error.
# Prints "N passed, N failed". Needs root, debootstrap and systemd-container.
#
#   sudo tests/e2e/restart_selftest.sh
#
# RESTART_UNIT_BIN=PATH uses an already built example instead of building it.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
e2e_trap_exit

bin=${RESTART_UNIT_BIN:-}
if [[ -z $bin ]]; then
	e2e_log "building examples/restart_unit (release)"
	if ! cargo build --quiet --release --example restart_unit --manifest-path "$repo/Cargo.toml"; then
		e2e_check "examples/restart_unit builds" false
		e2e_summary
		exit 1
	fi
	target=$(cargo metadata --format-version 1 --no-deps --manifest-path "$repo/Cargo.toml" |
		sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
	bin=${target:-$repo/target}/release/examples/restart_unit
fi
[[ -x $bin ]] || { e2e_log "no executable $bin"; exit 1; }

# shellcheck disable=SC2119 # no DIR: e2e_boot makes a temp dir
if ! e2e_rootfs >/dev/null || ! e2e_boot; then
	e2e_check "container boots to running/degraded" false
	e2e_summary
	exit 1
fi
e2e_check "container boots to running/degraded" true

e2e_copy_in "$bin" /usr/local/bin/restart_unit
unit() { # NAME CONTENT: install a unit file in the container
	printf '%s\n' "$2" | e2e_exec sh -c "cat >/etc/systemd/system/$1"
}
unit cr-sleeper.service "[Service]
ExecStart=/bin/sleep infinity"
unit cr-stopped.service "[Service]
ExecStart=/bin/sleep infinity"
unit cr-broken.service "[Service]
ExecStartPre=/bin/false
ExecStart=/bin/sleep infinity"
# Type=notify and never notifies: the start job waits for READY=1 that never comes.
unit cr-never-ready.service "[Service]
Type=notify
NotifyAccess=all
ExecStart=/bin/sleep infinity
TimeoutStartSec=60"
e2e_exec systemctl daemon-reload
e2e_exec systemctl start cr-sleeper.service

out=$E2E_DIR/out err=$E2E_DIR/err
# run UNIT [TIMEOUT]: the example inside the container; its output is logged as is.
run() {
	local rc=0
	e2e_exec /usr/local/bin/restart_unit "$@" >"$out" 2>"$err" || rc=$?
	printf '$ restart_unit %s  (exit %s)\n' "$*" "$rc"
	sed 's/^/  /' "$out" "$err"
	return "$rc"
}
val() { sed -n "s/^$1=//p" "$out"; }
show() { e2e_exec systemctl show -P "$2" "$1"; }
eq() { [[ -n $1 && $1 == "$2" ]]; }
ne() { [[ -n $1 && -n $2 && $1 != "$2" ]]; }
has() { grep -qF -- "$2" "$1"; }

before=$(show cr-sleeper.service InvocationID)
run cr-sleeper.service 30
rc=$?
e2e_check "restart of a running unit succeeds" eq "$rc" 0
e2e_check "... job result is done" eq "$(val result)" "done"
e2e_check "... old InvocationID is the one systemctl showed before" eq "$(val old-invocation-id)" "$before"
e2e_check "... new InvocationID is the one systemctl shows now" \
	eq "$(val new-invocation-id)" "$(show cr-sleeper.service InvocationID)"
e2e_check "... and differs from the old one" ne "$(val new-invocation-id)" "$before"
e2e_check "... the unit is active" eq "$(show cr-sleeper.service ActiveState)" active

run cr-stopped.service 30
rc=$?
e2e_check "restart of a stopped unit starts it" eq "$rc" 0
e2e_check "... with no old InvocationID and a new one" \
	eq "$(val old-invocation-id):$(val new-invocation-id)" "-:$(show cr-stopped.service InvocationID)"

run cr-broken.service 30
rc=$?
e2e_check "a unit that fails to start is an error" eq "$rc" 1
e2e_check "... naming the unit and the job result \"failed\"" \
	has "$err" 'error: cr-broken.service: restart job ended with result "failed" (unit is now failed/failed)'

run cr-never-ready.service 3
rc=$?
e2e_check "a unit that never gets ready is an error" eq "$rc" 1
e2e_check "... a timeout naming the unit" has "$err" 'error: cr-never-ready.service: restart job /org/freedesktop/systemd1/job/'
e2e_check "... and the time waited" has "$err" 'did not finish within 3s'
e2e_exec systemctl stop --no-block cr-never-ready.service

run cr-nope.service 30
rc=$?
e2e_check "a nonexistent unit is an error" eq "$rc" 1
e2e_check "... saying so" has "$err" 'error: cr-nope.service: no such unit'

e2e_teardown
e2e_summary

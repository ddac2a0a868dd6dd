# shellcheck shell=bash
# tests/e2e/lib.sh - boot a real systemd in a systemd-nspawn container for
# end-to-end tests of cert-rotator.
#
# Source it from a bash test script running as root:
#
#   . "$(dirname "$0")/lib.sh"
#   trap e2e_teardown EXIT
#   e2e_rootfs                      # build or reuse the cached rootfs tarball
#   e2e_boot                        # unpack + boot, waits for systemd
#   e2e_copy_in ./target/release/cert-rotator /usr/bin/cert-rotator
#   e2e_check "agent runs" e2e_exec systemctl start cert-rotator.service
#   e2e_summary                     # prints "N passed, N failed"
#
# e2e_boot sets global variables: call it from the test script's own shell,
# not in $(...), a pipeline or a ( ) subshell.
#
# Host requirements (Debian 12, root): debootstrap, systemd-container
# (systemd-nspawn), util-linux (nsenter, flock), tar, coreutils.
#
# Functions:
#   e2e_rootfs                  build/reuse cached tarball, prints its path
#                               and exports E2E_ROOTFS_TAR
#   e2e_boot [DIR]              unpack + boot; exports E2E_DIR E2E_ROOT E2E_PID
#                               E2E_NSPAWN_PID
#   e2e_bind_host_binary NAME...  bind the host's NAME read-only at
#                               /usr/local/bin/NAME in the next e2e_boot
#   e2e_exec CMD...             run CMD inside the container (stdin passed)
#   e2e_copy_in SRC DST         copy a host file/dir to DST in the container
#   e2e_wait_for SECS CMD...    poll CMD (on the host) until it succeeds
#   e2e_teardown                power off, kill if needed, delete; idempotent
#   e2e_trap_exit               trap EXIT/INT/TERM: dump journal on failure,
#                               then e2e_teardown
#   e2e_dump_journal [N]        journal (last N lines, default 300) to stderr
#   e2e_check DESC CMD...       "ok - DESC" / "not ok - DESC", counts results
#   e2e_summary                 "N passed, N failed"; non-zero if any failed
#   e2e_log MSG...              "# MSG" diagnostic line on stderr
#
# Environment knobs (all optional):
#   E2E_CACHE          cache dir for the rootfs tarball
#                      (default /var/cache/cert-rotator-e2e)
#   E2E_MIRROR         Debian mirror URL (default: derived from host apt
#                      sources, else http://deb.debian.org/debian)
#   E2E_EXTRA_PACKAGES extra comma/space separated packages for the rootfs
#   E2E_TMPDIR         where machine dirs are created (default /var/tmp)
#   E2E_NETWORK        "private" (default: own netns, loopback only) or "host"
#   E2E_BOOT_TIMEOUT   seconds to wait for systemd (default 60)
#   E2E_STOP_TIMEOUT   seconds to wait for poweroff (default 30)
#   E2E_KEEP           1 = keep the machine dir after teardown (debugging)
#   E2E_NSPAWN_ARGS    extra systemd-nspawn arguments (word-split)
#   E2E_KEEP_UNIT      1/0: pass --keep-unit (default: 1 unless the host runs
#                      systemd, see e2e_boot)

E2E_SUITE=${E2E_SUITE:-bookworm}
E2E_CACHE=${E2E_CACHE:-/var/cache/cert-rotator-e2e}

# Packages on top of debootstrap's minbase. Changing this list (or
# _e2e_customize_rootfs) changes the cache file name, so the rootfs is rebuilt.
E2E_PACKAGES=(
	systemd systemd-sysv dbus          # a real init + the system bus
	openssl ca-certificates            # cert generation, s_server/s_client
	procps iproute2                    # ps/pgrep, ip/ss
)

E2E_PASSED=${E2E_PASSED:-0}
E2E_FAILED=${E2E_FAILED:-0}

e2e_log() { printf '# %s\n' "$*" >&2; }

_e2e_die() {
	e2e_log "ERROR: $*"
	return 1
}

# ----------------------------------------------------------------- rootfs ---

# Print the Debian mirror the host's apt uses for $E2E_SUITE (one-line
# sources.list and deb822 *.sources), falling back to deb.debian.org.
_e2e_mirror() {
	if [[ -n ${E2E_MIRROR:-} ]]; then
		printf '%s\n' "$E2E_MIRROR"
		return 0
	fi
	local f uri=
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -r $f ]] || continue
		# deb [opts] URI SUITE COMPONENTS...
		uri=$(awk -v suite="$E2E_SUITE" '
			$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
				if ($(i + 1) == suite && $i ~ /^(https?|file):/) { print $i; exit }
			}' "$f")
		[[ -n $uri ]] && break
	done
	if [[ -z $uri ]]; then
		for f in /etc/apt/sources.list.d/*.sources; do
			[[ -r $f ]] || continue
			uri=$(awk -v suite="$E2E_SUITE" '
				BEGIN { RS = ""; FS = "\n" }
				{
					types = ""; uris = ""; suites = ""; enabled = "yes"
					for (i = 1; i <= NF; i++) {
						line = $i
						if (line ~ /^[ \t]*#/) continue
						if (match(line, /^[A-Za-z-]+:/)) {
							key = tolower(substr(line, 1, RLENGTH - 1))
							val = substr(line, RLENGTH + 1)
							gsub(/^[ \t]+|[ \t]+$/, "", val)
							if (key == "types") types = val
							else if (key == "uris") uris = val
							else if (key == "suites") suites = val
							else if (key == "enabled") enabled = tolower(val)
						}
					}
					if (enabled == "no") next
					if ((" " types " ") !~ / deb /) next
					if ((" " suites " ") !~ (" " suite " ")) next
					n = split(uris, u, /[ \t]+/)
					for (j = 1; j <= n; j++)
						if (u[j] ~ /^(https?|file):/) { print u[j]; exit }
				}' "$f")
			[[ -n $uri ]] && break
		done
	fi
	printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

# Adjust the freshly debootstrapped tree $1. Part of the cache key.
_e2e_customize_rootfs() {
	local r=$1
	# Empty machine-id: every boot gets a fresh transient one from nspawn.
	: >"$r/etc/machine-id"
	[[ -L $r/var/lib/dbus/machine-id ]] || rm -f "$r/var/lib/dbus/machine-id"
	# Nobody logs in on the console; tests use nsenter. Keeps the console
	# log free of agetty noise and avoids a getty fighting over the pty.
	ln -sf /dev/null "$r/etc/systemd/system/console-getty.service"
	ln -sf /dev/null "$r/etc/systemd/system/getty@.service"
	# No periodic jobs firing in the middle of a test (apt-daily would fail
	# without a mirror and leave the system "degraded").
	local t
	for t in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer; do
		rm -f "$r/etc/systemd/system/timers.target.wants/$t"
		ln -sf /dev/null "$r/etc/systemd/system/$t"
	done
	# Keep the journal in memory only, a fresh container per test run anyway.
	mkdir -p "$r/etc/systemd/journald.conf.d"
	printf '[Journal]\nStorage=volatile\nRateLimitBurst=0\n' \
		>"$r/etc/systemd/journald.conf.d/e2e.conf"
	# apt lists/debs are not needed inside (the container has no mirror).
	rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
	printf 'cert-rotator-e2e\n' >"$r/etc/hostname"
}

_e2e_packages() {
	local extra=()
	local pk=${E2E_EXTRA_PACKAGES:-}
	read -ra extra <<<"${pk//,/ }"
	printf '%s\n' "${E2E_PACKAGES[@]}" "${extra[@]}" | sort -u | paste -sd, -
}

# Cache key: suite + variant + package list + customization code.
_e2e_rootfs_key() {
	{
		printf 'suite=%s variant=minbase packages=%s\n' "$E2E_SUITE" "$(_e2e_packages)"
		declare -f _e2e_customize_rootfs
	} | sha256sum | cut -c1-16
}

# e2e_rootfs: print the path of the cached rootfs tarball, building it first
# if needed. Exports E2E_ROOTFS_TAR.
e2e_rootfs() {
	local key tar build mirror pkgs proxy=
	key=$(_e2e_rootfs_key) || return 1
	tar="$E2E_CACHE/$E2E_SUITE-rootfs-$key.tar"
	mkdir -p "$E2E_CACHE" || return 1
	(
		# Serialize concurrent builders; the second one reuses the result.
		flock 9 || exit 1
		[[ -s $tar ]] && exit 0
		command -v debootstrap >/dev/null ||
			_e2e_die "debootstrap missing: apt-get install -y debootstrap systemd-container" || exit 1
		mirror=$(_e2e_mirror)
		pkgs=$(_e2e_packages)
		# Honour an apt proxy the host is configured with (wget reads it).
		eval "$(apt-config shell proxy Acquire::http::Proxy 2>/dev/null)"
		if [[ -n $proxy && -z ${http_proxy:-} ]]; then export http_proxy=$proxy; fi
		build=$(mktemp -d "$E2E_CACHE/build.XXXXXX") || exit 1
		trap 'rm -rf --one-file-system "$build" "$tar.tmp"' EXIT
		mkdir -p "$E2E_CACHE/debs"
		e2e_log "building $E2E_SUITE rootfs from $mirror (packages: $pkgs)"
		if ! debootstrap --variant=minbase --include="$pkgs" \
			--cache-dir="$E2E_CACHE/debs" \
			"$E2E_SUITE" "$build/rootfs" "$mirror" >"$build/debootstrap.log" 2>&1; then
			tail -n 30 "$build/debootstrap.log" >&2
			[[ -f $build/rootfs/debootstrap/debootstrap.log ]] &&
				tail -n 30 "$build/rootfs/debootstrap/debootstrap.log" >&2
			_e2e_die "debootstrap failed"
			exit 1
		fi
		_e2e_customize_rootfs "$build/rootfs" || exit 1
		tar --numeric-owner --xattrs --xattrs-include='*' -C "$build/rootfs" \
			-cpf "$tar.tmp" . || exit 1
		mv -f "$tar.tmp" "$tar" || exit 1
		# Drop tarballs of older package lists.
		find "$E2E_CACHE" -maxdepth 1 -name "$E2E_SUITE-rootfs-*.tar" ! -name "${tar##*/}" -delete
		e2e_log "cached rootfs: $tar ($(du -h "$tar" | cut -f1))"
	) 9>"$E2E_CACHE/.lock" || return 1
	export E2E_ROOTFS_TAR=$tar
	printf '%s\n' "$tar"
}

# ------------------------------------------------------------------- boot ---

# Is PID alive (and not a zombie)?
_e2e_alive() {
	local pid=$1 state
	[[ -n $pid && -r /proc/$pid/stat ]] || return 1
	state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
	[[ -n $state && $state != Z && $state != X ]]
}

# Print the container's PID 1 (host pid): a descendant of the nspawn process
# whose innermost pid-namespace pid is 1 (NSpid: <host> ... 1).
_e2e_find_leader() {
	local queue=("$1") pid kids c key val nspid depth=0
	while ((${#queue[@]} && depth < 4)); do
		kids=()
		for pid in "${queue[@]}"; do
			if [[ -r /proc/$pid/task/$pid/children ]]; then
				# no trailing newline in this file: read returns 1 at EOF
				c=()
				read -ra c <"/proc/$pid/task/$pid/children" 2>/dev/null || :
				kids+=("${c[@]}")
			fi
		done
		for pid in "${kids[@]}"; do
			nspid=
			while read -r key val; do
				[[ $key == NSpid: ]] && nspid=$val && break
			done <"/proc/$pid/status" 2>/dev/null
			# NSpid has >1 entries in a child pid ns, the last being 1 for init
			if [[ $nspid == *[[:space:]]1 ]]; then
				printf '%s\n' "$pid"
				return 0
			fi
		done
		queue=("${kids[@]}")
		depth=$((depth + 1))
	done
	return 1
}

# e2e_boot [DIR]: unpack the cached rootfs into DIR (must not exist or be
# empty; default: a new mktemp dir under $E2E_TMPDIR) and boot it. Waits up to
# $E2E_BOOT_TIMEOUT s for `systemctl is-system-running` = running|degraded.
# Exports E2E_DIR (machine dir), E2E_ROOT (its rootfs), E2E_PID (container
# PID 1 on the host), E2E_NSPAWN_PID. Console output: $E2E_DIR/console.log.
e2e_boot() {
	local dir=${1:-} tar name deadline state net_args=() extra=()
	if [[ -n ${E2E_DIR:-} ]]; then
		_e2e_die "a container is already up ($E2E_DIR); call e2e_teardown first"
		return 1
	fi
	[[ $EUID -eq 0 ]] || { _e2e_die "must run as root"; return 1; }
	command -v systemd-nspawn >/dev/null ||
		{ _e2e_die "systemd-nspawn missing: apt-get install -y systemd-container"; return 1; }
	tar=${E2E_ROOTFS_TAR:-}
	[[ -s $tar ]] || tar=$(e2e_rootfs) || return 1

	if [[ -z $dir ]]; then
		mkdir -p "${E2E_TMPDIR:-/var/tmp}" || return 1
		dir=$(mktemp -d "${E2E_TMPDIR:-/var/tmp}/cert-rotator-e2e.XXXXXX") || return 1
	else
		if [[ -e $dir && -n $(ls -A "$dir" 2>/dev/null) ]]; then
			_e2e_die "e2e_boot: $dir exists and is not empty"
			return 1
		fi
		mkdir -p "$dir" || return 1
		dir=$(cd "$dir" && pwd -P)
	fi
	# Set before anything can fail so that e2e_teardown cleans up.
	export E2E_DIR=$dir E2E_ROOT=$dir/rootfs E2E_PID='' E2E_NSPAWN_PID=''
	mkdir "$E2E_ROOT" || return 1
	tar --numeric-owner --xattrs --xattrs-include='*' -C "$E2E_ROOT" -xpf "$tar" ||
		{ _e2e_die "unpacking $tar failed"; return 1; }

	name="cr-e2e-${dir##*.}"
	name=${name//[^A-Za-z0-9-]/-}
	case ${E2E_NETWORK:-private} in
	private) net_args=(--private-network) ;; # own netns: lo only, no port clashes
	host) net_args=() ;;
	*) _e2e_die "E2E_NETWORK must be private or host"; return 1 ;;
	esac
	# shellcheck disable=SC2206
	extra=(${E2E_NSPAWN_ARGS:-})
	# --keep-unit: run in the caller's cgroup instead of asking the host's
	# systemd for a scope. Needed where the host has no systemd as PID 1 (CI
	# containers/VMs like this one); on a systemd host let nspawn allocate its
	# own scope (override with E2E_KEEP_UNIT=1/0).
	local keep_unit=${E2E_KEEP_UNIT:-}
	if [[ -z $keep_unit ]]; then
		if [[ -d /run/systemd/system ]]; then keep_unit=0; else keep_unit=1; fi
	fi
	[[ $keep_unit == 1 ]] && extra=(--keep-unit "${extra[@]}")

	# --console=read-only: nspawn allocates the pty itself and copies the
	#   container console to our stdout (a file), so no tty/stdin is needed.
	# --register=no: no systemd-machined on the host needed.
	# --link-journal=no: never touch the host's /var/log/journal.
	# --resolv-conf/--timezone=off: do not bind host files into the rootfs.
	systemd-nspawn \
		--quiet \
		--directory="$E2E_ROOT" \
		--machine="$name" \
		--boot \
		--register=no \
		--console=read-only \
		--link-journal=no \
		--resolv-conf=off \
		--timezone=off \
		"${net_args[@]}" \
		"${extra[@]}" \
		</dev/null >"$dir/console.log" 2>&1 &
	export E2E_NSPAWN_PID=$!

	deadline=$((SECONDS + ${E2E_BOOT_TIMEOUT:-60}))
	while [[ -z $E2E_PID ]]; do
		if ! _e2e_alive "$E2E_NSPAWN_PID"; then
			tail -n 40 "$dir/console.log" >&2
			_e2e_die "systemd-nspawn exited during boot"
			return 1
		fi
		E2E_PID=$(_e2e_find_leader "$E2E_NSPAWN_PID") || E2E_PID=
		if [[ -z $E2E_PID ]]; then
			((SECONDS < deadline)) || { _e2e_die "no container PID 1 found"; return 1; }
			sleep 0.1
		fi
	done
	export E2E_PID

	while :; do
		state=$(e2e_exec systemctl is-system-running 2>/dev/null) || :
		case $state in
		running) break ;;
		degraded)
			e2e_log "container is degraded; failed units:"
			e2e_exec systemctl --no-pager --no-legend --failed >&2 || :
			break
			;;
		maintenance | stopping | offline)
			# offline = PID 1 not reachable yet; the others are final.
			if [[ $state != offline ]]; then
				tail -n 40 "$dir/console.log" >&2
				_e2e_die "container boot ended in state '$state'"
				return 1
			fi
			;;
		esac
		if ! _e2e_alive "$E2E_PID"; then
			tail -n 40 "$dir/console.log" >&2
			_e2e_die "container PID 1 died during boot"
			return 1
		fi
		if ((SECONDS >= deadline)); then
			tail -n 40 "$dir/console.log" >&2
			e2e_exec systemctl --no-pager list-jobs >&2 || :
			_e2e_die "container not up after ${E2E_BOOT_TIMEOUT:-60}s (state '${state:-?}')"
			return 1
		fi
		sleep 0.2
	done
	e2e_log "container up: dir=$E2E_DIR pid=$E2E_PID nspawn=$E2E_NSPAWN_PID"
}

# e2e_bind_host_binary NAME...: have the next e2e_boot bind the host's executable
# NAME (from PATH, symlinks resolved) read-only at /usr/local/bin/NAME in the
# container, instead of installing its package into the cached rootfs. Only for
# binaries that run there as they are: the host's Debian release (the rootfs's),
# linked against glibc alone or static (check with ldd). Fails naming a missing one.
e2e_bind_host_binary() {
	local n p
	for n; do
		p=$(command -v -- "$n") && p=$(readlink -f -- "$p") && [[ -x $p ]] ||
			{ _e2e_die "$n is not installed on the host"; return 1; }
		E2E_NSPAWN_ARGS="${E2E_NSPAWN_ARGS:-} --bind-ro=$p:/usr/local/bin/$n"
	done
	export E2E_NSPAWN_ARGS
}

# e2e_exec CMD...: run CMD inside the container (all its namespaces, its
# root), with a clean environment; stdin/stdout/stderr are passed through.
# Returns CMD's exit status.
e2e_exec() {
	[[ -n ${E2E_PID:-} ]] || { _e2e_die "e2e_exec: no container"; return 125; }
	nsenter --target "$E2E_PID" --all -- \
		/usr/bin/env -i \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 \
		"$@"
}

# e2e_copy_in SRC DST: copy host file or directory SRC to path DST in the
# container (through the machine directory; symlinks inside DST are resolved
# relative to the container root, never the host's). Like cp: if DST is an
# existing directory, SRC goes inside it. Parent dirs are created.
e2e_copy_in() {
	local src=$1 dst=$2 real
	[[ -n ${E2E_ROOT:-} && -d $E2E_ROOT ]] || { _e2e_die "e2e_copy_in: no container"; return 1; }
	[[ -e $src ]] || { _e2e_die "e2e_copy_in: $src does not exist"; return 1; }
	[[ $dst == /* ]] || { _e2e_die "e2e_copy_in: $dst must be absolute"; return 1; }
	# Resolve inside the container root (absolute symlinks must not escape).
	real=$(chroot "$E2E_ROOT" /usr/bin/readlink -m -- "$dst") || return 1
	[[ -d $E2E_ROOT$real ]] && real=${real%/}/${src##*/}
	mkdir -p "$E2E_ROOT$(dirname -- "$real")" || return 1
	cp -a --no-preserve=ownership -- "$src" "$E2E_ROOT$real"
}

# e2e_wait_for SECS CMD...: run CMD every 0.2 s until it succeeds or SECS
# pass. Returns 0 on success, 1 on timeout.
e2e_wait_for() {
	local secs=$1 deadline
	shift
	deadline=$((SECONDS + secs))
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

# e2e_teardown: power off the container, wait up to $E2E_STOP_TIMEOUT s,
# then SIGTERM/SIGKILL what is left and delete the machine dir. Safe to call
# twice or when e2e_boot failed half-way; never fails, keeps $? intact, so it
# can be used as `trap e2e_teardown EXIT`.
e2e_teardown() {
	local rc=$? deadline
	[[ -n ${E2E_DIR:-} ]] || return "$rc"
	if [[ -n ${E2E_PID:-} ]] && _e2e_alive "$E2E_PID"; then
		e2e_exec systemctl --no-block poweroff >/dev/null 2>&1 || :
	fi
	if [[ -n ${E2E_NSPAWN_PID:-} ]]; then
		deadline=$((SECONDS + ${E2E_STOP_TIMEOUT:-30}))
		while _e2e_alive "$E2E_NSPAWN_PID" && ((SECONDS < deadline)); do sleep 0.2; done
		if _e2e_alive "$E2E_NSPAWN_PID"; then
			e2e_log "container did not power off in time, sending SIGTERM"
			kill -TERM "$E2E_NSPAWN_PID" 2>/dev/null || :
			deadline=$((SECONDS + 10))
			while _e2e_alive "$E2E_NSPAWN_PID" && ((SECONDS < deadline)); do sleep 0.2; done
		fi
		if _e2e_alive "$E2E_NSPAWN_PID"; then
			e2e_log "killing container"
			# Killing PID 1 of a pid namespace kills everything in it.
			[[ -n ${E2E_PID:-} ]] && kill -KILL "$E2E_PID" 2>/dev/null
			kill -KILL "$E2E_NSPAWN_PID" 2>/dev/null || :
			deadline=$((SECONDS + 10))
			while _e2e_alive "$E2E_NSPAWN_PID" && ((SECONDS < deadline)); do sleep 0.2; done
		fi
		wait "$E2E_NSPAWN_PID" 2>/dev/null || : # reap if it is our child
	fi
	if [[ ${E2E_KEEP:-0} == 1 ]]; then
		e2e_log "E2E_KEEP=1: leaving $E2E_DIR"
	elif [[ $E2E_DIR == /*/* && -d $E2E_DIR ]]; then
		# The container's mounts lived in its own mount namespace; refuse to
		# recurse into anything still mounted here anyway.
		if grep -q " ${E2E_DIR}[/ ]" /proc/self/mounts 2>/dev/null; then
			e2e_log "mounts left under $E2E_DIR; not deleting it"
		else
			rm -rf --one-file-system -- "$E2E_DIR" 2>/dev/null ||
				e2e_log "could not remove $E2E_DIR"
		fi
	fi
	E2E_DIR='' E2E_ROOT='' E2E_PID='' E2E_NSPAWN_PID=''
	return "$rc"
}

# e2e_dump_journal [N]: the container's journal (last N lines, default 300)
# plus its failed units, on stderr, for failure diagnostics.
e2e_dump_journal() {
	local n=${1:-300}
	if [[ -z ${E2E_PID:-} ]] || ! _e2e_alive "$E2E_PID"; then
		e2e_log "no running container; console log follows"
		if [[ -n ${E2E_DIR:-} && -f $E2E_DIR/console.log ]]; then
			tail -n "$n" "$E2E_DIR/console.log" >&2
		fi
		return 0
	fi
	{
		echo "----- container journal (last $n lines) -----"
		e2e_exec journalctl --no-pager -o short-precise -n "$n"
		echo "----- failed units -----"
		e2e_exec systemctl --no-pager --failed
		echo "----- end of container journal -----"
	} >&2 2>&1 || :
}

# e2e_trap_exit: install traps so that the container is always torn down:
# on EXIT (dumping the journal first if the script fails or a check failed),
# and on INT/TERM (which then exit 130/143 through the EXIT trap).
e2e_trap_exit() {
	trap _e2e_on_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

_e2e_on_exit() {
	local rc=$?
	if ((rc != 0 || E2E_FAILED > 0)); then e2e_dump_journal 300; fi
	e2e_teardown
	exit "$rc"
}

# ---------------------------------------------------------------- asserts ---

# e2e_check DESC CMD...: run CMD; print "ok - DESC" or "not ok - DESC".
# Always returns 0 so that `set -e` scripts go on to the next check.
e2e_check() {
	local desc=$1 rc
	shift
	if "$@"; then
		E2E_PASSED=$((E2E_PASSED + 1))
		printf 'ok - %s\n' "$desc"
	else
		rc=$?
		E2E_FAILED=$((E2E_FAILED + 1))
		printf 'not ok - %s\n' "$desc"
		e2e_log "  failed with exit status $rc: $*"
	fi
	return 0
}

# e2e_summary: print "N passed, N failed" alone on a line; returns 1 if any
# check failed (or none ran).
e2e_summary() {
	printf '%d passed, %d failed\n' "$E2E_PASSED" "$E2E_FAILED"
	((E2E_FAILED == 0 && E2E_PASSED > 0))
}

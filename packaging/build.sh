#!/usr/bin/env bash
# Builds the Debian and RPM packages of cert-rotator:
#   target/packages/cert-rotator_<version>-1_amd64.deb     (cargo-deb)
#   target/packages/cert-rotator-<version>-1.x86_64.rpm    (cargo-generate-rpm)
# from a build in the `dist` profile (Cargo.toml: the release profile tuned
# for size, fat LTO; one binary, /usr/bin/cert-renew a symlink to it). The man
# pages come from the release build that `make test` also uses. Installs what
# it needs when missing: the two cargo
# subcommands (pinned versions, `cargo install --locked`) and, as root, the
# Debian packages dpkg-dev (dpkg-shlibdeps for the deb's Depends), rpm and
# lintian (for --check).
#
#   packaging/build.sh            build both packages
#   packaging/build.sh --check    build, then lintian the deb and list both
#   packaging/build.sh --tools    only install the tools (CI does it before the tests)
#
# Layout, conffiles, scriptlets and the not-enabled timer: docs/packaging.md.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1
APT_PACKAGES=(dpkg-dev rpm lintian)

check=0
tools_only=0
case "${1:-}" in
"") ;;
--check) check=1 ;;
--tools) tools_only=1 ;;
*)
	echo "usage: $0 [--check|--tools]" >&2
	exit 2
	;;
esac

out=target/packages
stage=$out/stage
say() { printf '==> %s\n' "$*" >&2; }

# --- tools -----------------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	if [ "$(id -u)" -ne 0 ]; then
		echo "$0: missing Debian packages: ${missing[*]} (run as root or install them)" >&2
		exit 1
	fi
	say "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# `cargo deb --version` prints "3.8.0"; `cargo generate-rpm --version`
# prints "cargo-generate-rpm 0.21.1".
tool_version() { cargo "$1" --version 2>/dev/null | awk '{print $NF}'; }
if [ "$(tool_version deb)" != "$CARGO_DEB_VERSION" ]; then
	say "cargo install --locked cargo-deb@$CARGO_DEB_VERSION"
	cargo install --locked --quiet "cargo-deb@$CARGO_DEB_VERSION"
fi
if [ "$(tool_version generate-rpm)" != "$CARGO_GENERATE_RPM_VERSION" ]; then
	say "cargo install --locked cargo-generate-rpm@$CARGO_GENERATE_RPM_VERSION"
	cargo install --locked --quiet "cargo-generate-rpm@$CARGO_GENERATE_RPM_VERSION"
fi

if ((tools_only)); then
	exit 0
fi

version=$(cargo metadata --no-deps --format-version 1 --locked |
	sed -n 's/.*"name":"cert-rotator","version":"\([^"]*\)".*/\1/p')
[ -n "$version" ] || {
	echo "$0: cannot read the package version" >&2
	exit 1
}
# One date for everything generated (man pages, changelog, file mtimes and
# build time in the packages): SOURCE_DATE_EPOCH if set, else the last
# commit's, so that rebuilding a commit gives the same packages. It is given
# only to the packaging tools, never to `cargo build`/`cargo run`: the cc build
# script of aws-lc-sys reruns when SOURCE_DATE_EPOCH changes, which
# would rebuild the crypto in both profiles.
sde=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
day=$(date -u -d "@$sde" +%F)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

# --- build -----------------------------------------------------------------------
# The packaged executable: profile dist (docs/performance.md, "Binary and
# package size"). cert-renew is this binary run under that name (src/main.rs).
profile=dist
say "cargo build --profile $profile (cert-rotator $version, $commit)"
cargo build --profile "$profile" --locked --bins
rm -rf "$stage"
mkdir -p "$stage/man"
say "man pages"
# cert-rotator.1, its subcommands' pages and cert-renew.1, all from the clap definitions.
cargo run --release --locked --quiet --example mangen -- "$stage/man" "$day" >/dev/null
gzip -9 -n -f "$stage"/man/*.1

# The deb's changelog (usr/share/doc/cert-rotator/changelog.Debian.gz, which
# Debian requires), one entry for this build.
cat >"$stage/changelog" <<EOF
cert-rotator ($version-1) unstable; urgency=medium

  * Upstream cert-rotator $version, built from commit $commit.

 -- cert-rotator developers <cert-rotator@example.org>  $(date -u -R -d "@$sde")
EOF

# --- package ---------------------------------------------------------------------
rm -f "$out"/cert-rotator_*.deb "$out"/cert-rotator-*.rpm
say "cargo deb"
# Both tools read the assets' "target/release/" as the given profile's directory.
SOURCE_DATE_EPOCH=$sde cargo deb --no-build --no-strip --locked --profile "$profile" --output "$out/" >/dev/null
say "cargo generate-rpm"
cargo generate-rpm --profile "$profile" --source-date "$sde" --output "$out/" >/dev/null

deb=$out/cert-rotator_${version}-1_amd64.deb
rpm=$out/cert-rotator-${version}-1.x86_64.rpm
for f in "$deb" "$rpm"; do
	[ -f "$f" ] || {
		echo "$0: expected $f was not built" >&2
		ls -l "$out" >&2
		exit 1
	}
done
ls -l "$deb" "$rpm"
# Size budget (docs/performance.md): the stripped binary at most 8 MiB, the
# deb at most 4 MiB. Printed always; a miss fails --check.
bin_size=$(stat -c %s "${CARGO_TARGET_DIR:-target}/$profile/cert-rotator")
deb_size=$(stat -c %s "$deb")
say "sizes: cert-rotator $bin_size bytes (budget 8388608), deb $deb_size bytes (budget 4194304)"
size_ok=1
((bin_size <= 8 * 1024 * 1024)) || size_ok=0
((deb_size <= 4 * 1024 * 1024)) || size_ok=0

if ((check)); then
	say "lintian $deb"
	lintian --fail-on error --info "$deb"
	say "dpkg-deb -c $deb"
	dpkg-deb -c "$deb"
	say "dpkg-deb -I $deb conffiles postinst prerm postrm"
	dpkg-deb -I "$deb" conffiles postinst prerm postrm
	say "rpm -qlpv $rpm"
	rpm -qlpv "$rpm"
	say "rpm -qp --scripts --configfiles $rpm"
	rpm -qp --scripts "$rpm"
	rpm -qp --configfiles "$rpm"
	if ((!size_ok)); then
		echo "$0: over the size budget (8 MiB binary, 4 MiB deb): docs/performance.md" >&2
		exit 1
	fi
fi

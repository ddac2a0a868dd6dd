#!/usr/bin/env bash
# Where the time (and heap) of `cert-rotator status --json` goes per extra certificate,
# measured from outside with the release binary, by varying the input (docs/performance.md,
# "Where the time and memory go"). Informational: no goals, exit 0 unless it cannot run.
#
# Variants, each a control-plane node plus N (default 1000) files in a config-listed
# directory /etc/bulk:
#   ca-signed  distinct ECDSA P-256 leaves + PKCS#8 keys signed by the node's ca (RSA-2048):
#              the case benches/status.sh measures
#   no-key     the same certificates without their .key files: no key is loaded
#   foreign    ECDSA leaves + keys signed by a CA that is not on the node: the issuer names
#              differ, so no signature is verified (signer "unknown")
#   rsa-key    N copies of apiserver-kubelet-client.crt/.key (RSA-2048, PKCS#1, signed by ca)
# Differences of CPU time per certificate (user + system, hyperfine means) give the cost of
# loading a key (ca-signed - no-key) and of identifying the signer (ca-signed - foreign).
#
# Run from the repository root:  benches/status-phases.sh    (about a minute)
# Knobs: CERT_ROTATOR_BIN, BENCH_N (default 1000), BENCH_KEEP=1.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
die() { echo "benches/status-phases.sh: $*" >&2; exit 2; }
for tool in cargo hyperfine openssl awk xargs; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install -y hyperfine openssl)"
done

N=${BENCH_N:-1000}
if [[ -n ${CERT_ROTATOR_BIN:-} ]]; then
    BIN=$CERT_ROTATOR_BIN
else
    cargo build --release --quiet --bin cert-rotator
    BIN=$here/target/release/cert-rotator
fi
BIN=$(readlink -f "$BIN")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cert-rotator-phases.XXXXXX")
trap '[[ ${BENCH_KEEP:-0} == 1 ]] && echo "kept $WORK" || rm -rf "$WORK"' EXIT

"$BIN" demo --keep "$WORK/node" >/dev/null || die "cert-rotator demo failed"
PKI=$WORK/node/etc/kubernetes/pki
mkdir -p "$WORK/node/etc/cert-rotator" "$WORK/node/etc/bulk"
cat >"$WORK/node/etc/cert-rotator/config.toml" <<'EOF'
[[extra]]
name = "bulk"
kind = "directory"
path = "/etc/bulk"
EOF
cat >"$WORK/leaf.cnf" <<'EOF'
[req]
distinguished_name = dn
x509_extensions = leaf
prompt = no
[dn]
CN = placeholder
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc -days 3650 \
    -subj /CN=foreign-ca -keyout "$WORK/foreign-ca.key" -out "$WORK/foreign-ca.crt" 2>/dev/null

variant() { cp -a "$WORK/node" "$WORK/$1"; }
gen() { # gen DIR CA-CERT CA-KEY
    mkdir -p "$1"
    seq -f '%05g' 1 "$N" | xargs -P "$(nproc)" -I{} openssl req -config "$WORK/leaf.cnf" -x509 \
        -CA "$2" -CAkey "$3" -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc -days 365 \
        -subj "/O=bench/CN=bulk-{}" -keyout "$1/bulk-{}.key" -out "$1/bulk-{}.crt" 2>/dev/null
}
echo "== generating 2 x $N ECDSA certificates"
gen "$WORK/pool-ca" "$PKI/ca.crt" "$PKI/ca.key"
gen "$WORK/pool-foreign" "$WORK/foreign-ca.crt" "$WORK/foreign-ca.key"
variant base
variant ca-signed && ln "$WORK"/pool-ca/* "$WORK/ca-signed/etc/bulk/"
variant no-key && ln "$WORK"/pool-ca/*.crt "$WORK/no-key/etc/bulk/"
variant foreign && ln "$WORK"/pool-foreign/* "$WORK/foreign/etc/bulk/"
variant rsa-key
for i in $(seq -f '%05g' 1 "$N"); do
    cp "$PKI/apiserver-kubelet-client.crt" "$WORK/rsa-key/etc/bulk/rsa-$i.crt"
    cp "$PKI/apiserver-kubelet-client.key" "$WORK/rsa-key/etc/bulk/rsa-$i.key"
done
for v in base ca-signed no-key foreign rsa-key; do
    "$BIN" --root "$WORK/$v" status --json >"$WORK/$v.json" || die "status failed on $v"
done

echo "== hyperfine"
hyperfine -N --style basic --warmup 3 --min-runs 20 --export-csv "$WORK/startup.csv" \
    -n startup "$BIN --version" >/dev/null
hyperfine -N --style basic --warmup 3 --min-runs 20 --export-csv "$WORK/phases.csv" \
    -L v base,ca-signed,no-key,foreign,rsa-key -n "{v}" "$BIN --root $WORK/{v} status --json" >/dev/null

echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -F, 'NR == 2 {printf "process start-up (--version): wall %.2f ms, cpu %.2f ms\n", $4 * 1000, ($5 + $6) * 1000}' "$WORK/startup.csv"
awk -F, -v n="$N" '
    NR > 1 { w[$9] = $4 * 1000; c[$9] = ($5 + $6) * 1000 }
    END {
        printf "%-10s %10s %10s %14s %14s\n", "variant", "wall ms", "cpu ms", "wall/cert us", "cpu/cert us"
        split("base ca-signed no-key foreign rsa-key", vs, " ")
        for (i = 1; i <= 5; i++) {
            v = vs[i]
            if (v == "base") printf "%-10s %10.2f %10.2f\n", v, w[v], c[v]
            else printf "%-10s %10.2f %10.2f %14.1f %14.1f\n", v, w[v], c[v], (w[v] - w["base"]) / n * 1000, (c[v] - c["base"]) / n * 1000
        }
        per = (c["ca-signed"] - c["base"]) / n * 1000
        key = (c["ca-signed"] - c["no-key"]) / n * 1000
        sig = (c["ca-signed"] - c["foreign"]) / n * 1000
        printf "\nCPU per ca-signed certificate with key: %.1f us =\n", per
        printf "  %5.1f us  loading and checking its key (ca-signed - no-key)\n", key
        printf "  %5.1f us  identifying the signer: re-parsing both certificates, RSA-2048 verify (ca-signed - foreign)\n", sig
        printf "  %5.1f us  the rest: directory scan, stat/open/read, PEM, X.509 parse, status, JSON\n", per - key - sig
        printf "RSA-2048 key instead of ECDSA P-256: %+.1f us per certificate\n", (c["rsa-key"] - c["ca-signed"]) / n * 1000
    }' "$WORK/phases.csv"

if command -v valgrind >/dev/null; then
    echo
    echo "peak heap (valgrind massif, useful bytes):"
    for v in base ca-signed; do
        valgrind --tool=massif --massif-out-file="$WORK/massif-$v.out" \
            "$BIN" --root "$WORK/$v" status --json >/dev/null 2>&1
        peak=$(awk -F= '/^mem_heap_B=/ {if ($2 > m) m = $2} END {print m}' "$WORK/massif-$v.out")
        printf '  %-10s %9d B\n' "$v" "$peak"
        [[ $v == base ]] && base_heap=$peak
    done
    awk -v a="$base_heap" -v b="$peak" -v n="$N" 'BEGIN {printf "  per extra certificate: %.0f B\n", (b - a) / n}'
    printf '  JSON output with %d extra certificates: %d B (%.0f B per certificate)\n' "$N" \
        "$(wc -c <"$WORK/ca-signed.json")" \
        "$(awk -v a="$(wc -c <"$WORK/ca-signed.json")" -v b="$(wc -c <"$WORK/base.json")" -v n="$N" 'BEGIN {print (a - b) / n}')"
fi

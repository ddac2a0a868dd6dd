#!/usr/bin/env bash
# Performance benchmark of `cert-rotator status --json` (a script, not a timed test).
#
# Goals (docs/performance.md):
#   G1  on a full control-plane node, `status --json` is at least 20x faster in wall time
#       than a shell loop running `openssl x509 -noout -enddate` over the same files;
#   G2  1,000 extra certificates from a config-listed directory cost under 1 ms each, and
#       the per-certificate cost stays flat (linear growth) from 250 to 2,000;
#   G3  peak RSS under 10 MiB on the full control-plane node;
#   G4  on the same node, `status --json` against a `cat` of the files it reads (issue 17,
#       "reading is cheap"): printed for information, no longer judged; the 2x it once
#       asked measures process start-up on a VM, not reading (docs/performance.md,
#       "Fourth round"); with valgrind installed, the instructions of both are printed too;
#   G5  peak RSS at most 16 MiB with 10,000 extra certificates (memory flat in their number).
#
# Run from the repository root:  benches/status.sh
# Needs: cargo, hyperfine, GNU time (/usr/bin/time), openssl, strace, awk, base64, grep.
# Environment knobs (all optional):
#   CERT_ROTATOR_BIN   binary to measure (default: target/release/cert-rotator, built here)
#   BENCH_SIZES        extra-certificate counts (default: "0 250 500 1000 2000"; must start at 0)
#   BENCH_KEEP=1       keep the temp dir with the nodes and raw hyperfine exports
#   BENCH_BULK         extra certificates for G5 (default 10000; hard links cycling the
#                      largest size's distinct certificates)
#   CERT_ROTATOR_BASELINE  a second binary (an older build) measured beside the first for
#                      G4 and G5, for a before/after under the same load (not judged)
# Exit status: 0 every goal met, 1 a goal missed, 2 the benchmark itself could not run.

# shellcheck disable=SC2016  # single-quoted text is written out verbatim, for another shell
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

die() { echo "benches/status.sh: $*" >&2; exit 2; }

for tool in cargo hyperfine openssl strace awk base64 grep readlink; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install -y hyperfine time openssl strace)"
done
[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) not found (Debian: apt-get install -y time)"

# Goal thresholds.
GOAL_SPEEDUP=20          # G1: openssl loop / status, wall time (median)
GOAL_PER_CERT_MS=1.0     # G2: marginal cost per extra certificate
GOAL_FLAT_RATIO=1.5      # G2: per-cert cost of the largest size / of the smallest (> 0) size
GOAL_RSS_KIB=10240       # G3: 10 MiB
OLD_CAT_RATIO=2.0        # G4: the ratio once asked (status / cat, wall medians): shown, not judged
GOAL_BULK_RSS_KIB=16384  # G5: 16 MiB
BULK_N=${BENCH_BULK:-10000}

SIZES=${BENCH_SIZES:-"0 250 500 1000 2000"}
read -r -a sizes <<<"$SIZES"
[[ ${sizes[0]} == 0 ]] || die "BENCH_SIZES must start with 0 (the baseline)"
max_n=0
for n in "${sizes[@]}"; do ((n > max_n)) && max_n=$n; done
((max_n > 0)) || die "BENCH_SIZES needs a size above 0 (its certificates fill G5's directory)"

# --- binary ------------------------------------------------------------------------------
if [[ -n ${CERT_ROTATOR_BIN:-} ]]; then
    BIN=$CERT_ROTATOR_BIN
else
    echo "== cargo build --release (a no-op when up to date)"
    cargo build --release --quiet --bin cert-rotator
    BIN=$here/target/release/cert-rotator
fi
[[ -x $BIN ]] || die "$BIN is not executable"
BIN=$(readlink -f "$BIN")
BASE=""
if [[ -n ${CERT_ROTATOR_BASELINE:-} ]]; then
    [[ -x $CERT_ROTATOR_BASELINE ]] || die "$CERT_ROTATOR_BASELINE is not executable"
    BASE=$(readlink -f "$CERT_ROTATOR_BASELINE")
fi

# --- work dir ----------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cert-rotator-bench.XXXXXX")
cleanup() {
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        echo "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

started=$(date +%s)

# --- the full control-plane node ---------------------------------------------------------
echo "== building the control-plane node (cert-rotator demo --keep)"
NODE=$WORK/node
"$BIN" demo --keep "$NODE" >"$WORK/demo.out" || die "cert-rotator demo failed (see $WORK/demo.out)"
PKI=$NODE/etc/kubernetes/pki

# The files `status` reads certificates from, for the openssl loop. Fixed at setup time so
# the timed loop does only the per-file work:
#   - every *.crt under etc/kubernetes/pki (7 leaves + ca, front-proxy-ca, etcd/ca);
#   - var/lib/kubelet/pki/kubelet.crt;
#   - var/lib/kubelet/pki/kubelet-client-current.pem: an absolute symlink, as the kubelet
#     writes it, so the loop follows it under the node root with readlink, as status does;
#   - every kubeconfig status reports that embeds client-certificate-data (admin.conf,
#     controller-manager.conf, scheduler.conf, /root/.kube/config): grep | awk | base64 -d.
#     (kubelet.conf points at kubelet-client-current.pem, which is already in the list.)
mapfile -t pem_files < <(cd "$NODE" && find etc/kubernetes/pki -name '*.crt' | sort)
pem_files+=(var/lib/kubelet/pki/kubelet.crt)
kubeconfigs=()
for f in etc/kubernetes/admin.conf etc/kubernetes/super-admin.conf \
    etc/kubernetes/controller-manager.conf etc/kubernetes/scheduler.conf \
    etc/kubernetes/kubelet.conf root/.kube/config; do
    [[ -f $NODE/$f ]] && grep -q client-certificate-data "$NODE/$f" && kubeconfigs+=("$f")
done
LOOP=$WORK/openssl-loop.sh
{
    echo '#!/usr/bin/env bash'
    echo '# The shell loop status --json is compared with: one openssl x509 per certificate.'
    echo 'set -e'
    echo 'cd "$1"'
    printf 'for f in'
    printf ' %q' "${pem_files[@]}"
    echo '; do'
    echo '    openssl x509 -noout -enddate -in "$f"'
    echo 'done'
    echo 'openssl x509 -noout -enddate -in ".$(readlink var/lib/kubelet/pki/kubelet-client-current.pem)"'
    printf 'for f in'
    printf ' %q' "${kubeconfigs[@]}"
    echo '; do'
    echo "    grep client-certificate-data \"\$f\" | awk '{print \$2}' | base64 -d | openssl x509 -noout -enddate"
    echo 'done'
} >"$LOOP"
chmod +x "$LOOP"
loop_certs=$(("${#pem_files[@]}" + 1 + "${#kubeconfigs[@]}"))

# Sanity: both sides read the same certificates, and status is clean.
"$LOOP" "$NODE" >"$WORK/loop.out" || die "the openssl loop failed (see $LOOP)"
[[ $(grep -c '^notAfter=' "$WORK/loop.out") == "$loop_certs" ]] || die "openssl loop printed the wrong number of dates"
"$BIN" --root "$NODE" status --json >"$WORK/status.json" || die "status --json exited non-zero on the demo node"
status_targets=$(grep -c '"kind": ' "$WORK/status.json")
status_missing=$(grep -c '"missing": true' "$WORK/status.json" || true)
status_cas=$(grep -c '"has_key": ' "$WORK/status.json")
status_read=$((status_targets - status_missing + status_cas))
[[ $status_read == "$loop_certs" ]] || die "status read $status_read certificates, the openssl loop $loop_certs"
grep -q '"error": "' "$WORK/status.json" && die "status reported an error on the demo node"

# G4's `cat`: exactly the files status opens on this node, as strace sees them (the
# certificates, keys and kubeconfigs; the kubelet's symlink resolved), fixed at setup.
# openat2: the gate opens a path without symlinks with it (RESOLVE_NO_SYMLINKS). An O_PATH
# open only looks at an entry (whether it exists, where a path leads) and reads nothing.
mapfile -t read_files < <(
    strace -f -qq -e trace=openat,openat2 -e status=successful "$BIN" --root "$NODE" status --json 2>&1 >/dev/null |
        grep -v O_PATH | grep -o "\"$NODE/[^\"]*\"" | tr -d '"' | sort -u |
        while read -r f; do [[ -f $f ]] && echo "$f"; done
)
((${#read_files[@]} > 0)) || die "strace saw status open no file of the node"
# At least one file per certificate read: fewer means strace missed an open.
((${#read_files[@]} >= loop_certs)) ||
    die "strace saw status open ${#read_files[@]} files for $loop_certs certificates (a system call not traced?)"
CAT_CMD="cat ${read_files[*]}"

# --- nodes with extra certificates -------------------------------------------------------
# Distinct ECDSA P-256 leaves with their keys (PKCS#8), signed by the node's ca (RSA-2048),
# one `openssl req` each, made once and hard-linked into each node's /etc/bulk.
echo "== generating $max_n extra certificates (ECDSA P-256 leaf + key, signed by the node's ca)"
POOL=$WORK/pool
mkdir -p "$POOL"
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
gen_start=$(date +%s)
export PKI POOL WORK
seq -f '%05g' 1 "$max_n" | xargs -P "$(nproc)" -I{} sh -c '
    openssl req -config "$WORK/leaf.cnf" -x509 -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
        -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc -days 365 \
        -subj "/O=bench/CN=bulk-{}" -addext "subjectAltName=DNS:bulk-{}.bench.svc" \
        -keyout "$POOL/bulk-{}.key" -out "$POOL/bulk-{}.crt" 2>/dev/null' \
    || die "openssl could not generate the extra certificates"
echo "   ($(($(date +%s) - gen_start)) s)"

for n in "${sizes[@]}"; do
    d=$WORK/node-$n
    cp -a "$NODE" "$d"
    mkdir -p "$d/etc/cert-rotator" "$d/etc/bulk"
    cat >"$d/etc/cert-rotator/config.toml" <<'EOF'
[[extra]]
name = "bulk"
kind = "directory"
path = "/etc/bulk"
EOF
    if ((n > 0)); then
        seq -f '%05g' 1 "$n" | while read -r i; do
            ln "$POOL/bulk-$i.crt" "$POOL/bulk-$i.key" "$d/etc/bulk/"
        done
    fi
    "$BIN" --root "$d" status --json >"$WORK/status-$n.json" || die "status --json exited non-zero with $n extra certificates"
    got=$(grep -c '"name": "bulk/' "$WORK/status-$n.json" || true)
    [[ $got == "$n" ]] || die "status listed $got of $n extra certificates"
    signed=$(grep -A17 '"name": "bulk/' "$WORK/status-$n.json" | grep -c '"signer": "ca"' || true)
    [[ $signed == "$n" ]] || die "only $signed of $n extra certificates were read as signed by ca"
    grep -q '"error": "' "$WORK/status-$n.json" && die "status reported an error with $n extra certificates"
done

# G5's node: BULK_N extra certificates, hard links that cycle through the max_n distinct
# ones (memory is held per file read, whatever its content).
BULK=$WORK/node-bulk
cp -a "$NODE" "$BULK"
mkdir -p "$BULK/etc/cert-rotator" "$BULK/etc/bulk"
cp "$WORK/node-0/etc/cert-rotator/config.toml" "$BULK/etc/cert-rotator/config.toml"
for ((i = 1; i <= BULK_N; i++)); do
    printf -v src '%05d' $(((i - 1) % max_n + 1))
    printf -v dst '%05d' "$i"
    ln "$POOL/bulk-$src.crt" "$BULK/etc/bulk/bulk-$dst.crt"
    ln "$POOL/bulk-$src.key" "$BULK/etc/bulk/bulk-$dst.key"
done
"$BIN" --root "$BULK" status --json >"$WORK/status-bulk.json" || die "status --json exited non-zero with $BULK_N extra certificates"
got=$(grep -c '"name": "bulk/' "$WORK/status-bulk.json" || true)
[[ $got == "$BULK_N" ]] || die "status listed $got of $BULK_N extra certificates"
grep -q '"error": "' "$WORK/status-bulk.json" && die "status reported an error with $BULK_N extra certificates"

# --- timing ------------------------------------------------------------------------------
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

echo "== hyperfine: status --json vs the openssl loop on the control-plane node"
hyperfine -N --style basic --warmup 5 --min-runs 50 \
    --export-csv "$WORK/full-status.csv" \
    -n "status --json" "$BIN --root $NODE status --json"
hyperfine -N --style basic --warmup 2 --min-runs 10 \
    --export-csv "$WORK/full-loop.csv" \
    -n "openssl loop" "bash $LOOP $NODE"

echo "== hyperfine: status --json with N extra certificates"
size_list=$(IFS=,; echo "${sizes[*]}")
hyperfine -N --style basic --warmup 3 --min-runs 20 \
    --export-csv "$WORK/extra.csv" \
    --parameter-list n "$size_list" \
    -n "status --json with {n} extra" "$BIN --root $WORK/node-{n} status --json"

echo "== hyperfine: status --json vs cat of the ${#read_files[@]} files it reads"
base_args=()
[[ -n $BASE ]] && base_args=(-n "baseline status --json" "$BASE --root $NODE status --json")
hyperfine -N --style basic --warmup 10 --min-runs 100 \
    --export-csv "$WORK/cat.csv" \
    -n "status --json" "$BIN --root $NODE status --json" \
    -n "cat" "$CAT_CMD" \
    -n "start-up" "$BIN --version" \
    "${base_args[@]}"

load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- peak RSS ----------------------------------------------------------------------------
# GNU time's "Maximum resident set size" (KiB), the largest of 10 runs.
peak_rss() {
    local root=$1 bin=${2:-$BIN} max=0 kib
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        kib=$(/usr/bin/time -v "$bin" --root "$root" status --json 2>&1 >/dev/null |
            awk -F': ' '/Maximum resident set size/ {print $2}')
        ((kib > max)) && max=$kib
    done
    echo "$max"
}
echo "== peak RSS (/usr/bin/time -v, max of 10 runs)"
rss_full=$(peak_rss "$NODE")
rss_max_n=$(peak_rss "$WORK/node-$max_n")
rss_bulk=$(peak_rss "$BULK")
rss_bulk_base=""
[[ -n $BASE ]] && rss_bulk_base=$(peak_rss "$BULK" "$BASE")

# --- summary -----------------------------------------------------------------------------
# hyperfine CSV: command,mean,stddev,median,user,system,min,max[,parameter_n] (seconds)
csv_field() { awk -F, -v col="$2" 'NR == 2 {print $col}' "$1"; }
ms() { awk -v s="$1" 'BEGIN {printf "%.2f", s * 1000}'; }

st_mean=$(csv_field "$WORK/full-status.csv" 2); st_sd=$(csv_field "$WORK/full-status.csv" 3)
st_med=$(csv_field "$WORK/full-status.csv" 4)
lp_mean=$(csv_field "$WORK/full-loop.csv" 2); lp_sd=$(csv_field "$WORK/full-loop.csv" 3)
lp_med=$(csv_field "$WORK/full-loop.csv" 4)
speedup=$(awk -v a="$lp_med" -v b="$st_med" 'BEGIN {printf "%.1f", a / b}')
speedup_mean=$(awk -v a="$lp_mean" -v b="$st_mean" 'BEGIN {printf "%.1f", a / b}')

verdict() { if [[ $1 == 1 ]]; then echo "met"; else echo "MISSED"; fi; }

echo
echo "==================== summary ===================="
echo "binary:  $BIN"
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo "load average before/after timing: $load_before / $load_after"
echo
echo "G1  control-plane node ($status_targets targets, $status_missing missing, $status_cas CAs = $loop_certs certificates read)"
printf '    %-28s median %9s ms   mean %9s ms ± %s\n' "status --json" "$(ms "$st_med")" "$(ms "$st_mean")" "$(ms "$st_sd")"
printf '    %-28s median %9s ms   mean %9s ms ± %s\n' "openssl loop ($loop_certs openssl)" "$(ms "$lp_med")" "$(ms "$lp_mean")" "$(ms "$lp_sd")"
g1=$(awk -v s="$speedup" -v g="$GOAL_SPEEDUP" 'BEGIN {print (s >= g) ? 1 : 0}')
echo "    speed-up (median) ${speedup}x  (mean ${speedup_mean}x), goal >= ${GOAL_SPEEDUP}x: $(verdict "$g1")"

echo
echo "G2  extra certificates in /etc/bulk; per cert = (t(N) - t(0)) / N, marginal = between consecutive sizes"
echo "    wall = hyperfine median; cpu = mean user + system (unaffected by waiting for a CPU on a busy machine)"
printf '    %6s %10s %10s %13s %13s %13s\n' N "wall ms" "cpu ms" "wall/cert ms" "wall marg ms" "cpu/cert ms"
# Rows sorted by N; per-cert and marginal costs; least-squares slope of wall time.
read -r g2 per1000 wall_flat cpu_flat slope r2 < <(
    awk -F, 'NR > 1 {print $9, $4, $5 + $6}' "$WORK/extra.csv" | sort -n |
        awk -v goal="$GOAL_PER_CERT_MS" -v flat_goal="$GOAL_FLAT_RATIO" -v table="$WORK/extra-table.txt" '
        { n[NR] = $1; w[NR] = $2 * 1000; c[NR] = $3 * 1000; rows = NR }
        END {
            ok = 1; wf = 0; wl = 0; cf = 0; cl = 0; per1000 = -1
            for (i = 1; i <= rows; i++) {
                wp = ""; wm = ""; cp = ""
                if (n[i] > 0) {
                    p = (w[i] - w[1]) / n[i]; wp = sprintf("%.4f", p)
                    q = (c[i] - c[1]) / n[i]; cp = sprintf("%.4f", q)
                    if (p >= goal) ok = 0
                    if (wf == 0) { wf = p; cf = q }
                    wl = p; cl = q
                    if (n[i] == 1000) per1000 = p
                }
                if (i > 1) {
                    m = (w[i] - w[i - 1]) / (n[i] - n[i - 1]); wm = sprintf("%.4f", m)
                    if (m >= goal) ok = 0
                }
                printf "    %6d %10.2f %10.2f %13s %13s %13s\n", n[i], w[i], c[i], wp, wm, cp > table
                sx += n[i]; sy += w[i]; sxx += n[i] * n[i]; sxy += n[i] * w[i]; syy += w[i] * w[i]
            }
            slope = (rows * sxy - sx * sy) / (rows * sxx - sx * sx)
            r = (rows * sxy - sx * sy) / sqrt((rows * sxx - sx * sx) * (rows * syy - sy * sy))
            wfl = (wf > 0) ? wl / wf : 0
            cfl = (cf > 0) ? cl / cf : 0
            flat_ok = (cfl > 0 && cfl <= flat_goal && cfl >= 1 / flat_goal) ? 1 : 0
            printf "%d %.4f %.2f %.2f %.4f %.4f\n", (ok && flat_ok), per1000, wfl, cfl, slope, r * r
        }'
)
cat "$WORK/extra-table.txt"
if [[ $per1000 == -1.0000 ]]; then per1000="n/a (1000 not among the sizes)"; else per1000="$per1000 ms"; fi
echo "    wall time: least-squares slope ${slope} ms/cert (R^2 = ${r2}); per cert at N=1000: ${per1000}"
echo "    per-cert cost, largest N / smallest N > 0: cpu ${cpu_flat}, wall ${wall_flat} (flat: cpu within 1/${GOAL_FLAT_RATIO}..${GOAL_FLAT_RATIO})"
echo "    goal < ${GOAL_PER_CERT_MS} ms per cert (wall, every size and step) and flat (cpu): $(verdict "$g2")"

echo
echo "G3  peak RSS (max of 10 runs)"
mib() { awk -v k="$1" 'BEGIN {printf "%.2f", k / 1024}'; }
g3=$(( rss_full < GOAL_RSS_KIB ? 1 : 0 ))
echo "    control-plane node:              ${rss_full} KiB = $(mib "$rss_full") MiB, goal < 10 MiB: $(verdict "$g3")"
echo "    with $max_n extra certificates: ${rss_max_n} KiB = $(mib "$rss_max_n") MiB (for information)"

echo
echo "G4  control-plane node: status --json vs cat of the ${#read_files[@]} files it reads (hyperfine medians; cpu = user + system)"
# Rows of cat.csv by command name: median and cpu of each.
cat_row() { awk -F, -v n="$1" '$1 == n {printf "%s %s\n", $4, $5 + $6}' "$WORK/cat.csv"; }
read -r s_med s_cpu < <(cat_row "status --json")
read -r c_med c_cpu < <(cat_row "cat")
ratio=$(awk -v a="$s_med" -v b="$c_med" 'BEGIN {printf "%.2f", a / b}')
cpu_ratio=$(awk -v a="$s_cpu" -v b="$c_cpu" 'BEGIN {printf "%.2f", a / b}')
printf '    %-24s median %7s ms   cpu %7s ms\n' "status --json" "$(ms "$s_med")" "$(ms "$s_cpu")"
printf '    %-24s median %7s ms   cpu %7s ms\n' "cat" "$(ms "$c_med")" "$(ms "$c_cpu")"
# The start-up alone (exec, dynamic linking, relocation, std's set-up): the part of
# status's time that is not reading (for information, not judged).
read -r v_med v_cpu < <(cat_row "start-up")
printf '    %-24s median %7s ms   cpu %7s ms   (start-up only)\n' "--version" "$(ms "$v_med")" "$(ms "$v_cpu")"
if [[ -n $BASE ]]; then
    read -r b_med b_cpu < <(cat_row "baseline status --json")
    printf '    %-24s median %7s ms   cpu %7s ms   (%sx cat)\n' "baseline status --json" "$(ms "$b_med")" "$(ms "$b_cpu")" \
        "$(awk -v a="$b_med" -v b="$c_med" 'BEGIN {printf "%.2f", a / b}')"
fi
echo "    status / cat: ${ratio}x wall (cpu ${cpu_ratio}x); for information (once a goal of <= ${OLD_CAT_RATIO}x:"
echo "    docs/performance.md, \"Fourth round\", says why it measures start-up, not reading)"
# Instructions (callgrind) say what the wall-time ratio hides: how much more status
# executes than cat. Optional: only where valgrind is installed.
if command -v valgrind >/dev/null; then
    instr() {
        valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null |
            awk '/refs:/ {gsub(",", "", $NF); printf "%.2f", $NF / 1e6}'
    }
    s_ins=$(instr "$BIN" --root "$NODE" status --json)
    # shellcheck disable=SC2086  # CAT_CMD is the command and its file list, split on purpose
    c_ins=$(instr $CAT_CMD)
    v_ins=$(instr "$BIN" --version)
    echo "    instructions (callgrind): status --json ${s_ins} M, cat ${c_ins} M, --version ${v_ins} M"
fi

echo
echo "G5  peak RSS with $BULK_N extra certificates (max of 10 runs)"
g5=$(( rss_bulk <= GOAL_BULK_RSS_KIB ? 1 : 0 ))
echo "    ${rss_bulk} KiB = $(mib "$rss_bulk") MiB, goal <= 16 MiB: $(verdict "$g5")"
[[ -n $rss_bulk_base ]] && echo "    baseline: ${rss_bulk_base} KiB = $(mib "$rss_bulk_base") MiB"
echo
echo "total benchmark time: $(($(date +%s) - started)) s"
if ((g1 != 1 || g2 != 1 || g3 != 1 || g5 != 1)); then
    echo "RESULT: a goal was missed"
    exit 1
fi
echo "RESULT: every goal met"

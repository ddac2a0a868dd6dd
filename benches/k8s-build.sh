#!/usr/bin/env bash
# benches/k8s-build.sh: the cold build of the pinned Kubernetes components (tests/k8s/build.sh)
# measured: wall time, CPU time and peak memory (GNU time), module and build cache sizes, and
# the binaries' sizes. Cold means an empty Go build cache and an empty binary cache; the
# module cache is kept unless K8S_BENCH_COLD_MODULES=1 (then the download is measured too).
# Everything goes to a temporary directory, removed at the end; the machine's caches are
# left alone. Results: docs/performance.md, "The real Kubernetes components".
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { echo "k8s-build.sh: needs GNU time (apt-get install time)" >&2; exit 1; }
work=$(mktemp -d /var/tmp/k8s-build-bench.XXXXXX)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export GOCACHE=$work/go-build CERT_ROTATOR_K8S_CACHE=$work/bin
if [[ ${K8S_BENCH_COLD_MODULES:-0} == 1 ]]; then export GOMODCACHE=$work/mod; fi
echo "# $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(go version)"
/usr/bin/time -f 'wall %e s, user %U s, system %S s, peak RSS %M KiB' tests/k8s/build.sh >"$work/dir" 2>"$work/log" ||
	{ tail -n 30 "$work/log" >&2; exit 1; }
grep -E '^wall ' "$work/log"
bin=$(tail -n1 "$work/dir")
echo "# build cache $(du -sh "$GOCACHE" | cut -f1), module cache $(du -sh "$(go env GOMODCACHE)" | cut -f1)"
for f in "$bin"/*; do printf '%-26s %s\n' "${f##*/}" "$(stat -c %s "$f")"; done

#!/usr/bin/env bash
# Build the test control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok, helm) from Go modules into a cache directory
# outside the repository, keyed by the Kubernetes version and a hash of the
# wrapper modules. Idempotent: when every binary is there it only prints the path.
#
#   BIN=$(hack/control-plane/build.sh | tail -1)
#
# Environment:
#   KUBELOAD_CACHE   cache root (default: $HOME/.cache/kubeload)
#   GO               go command (default: go on PATH, else /usr/local/go/bin/go)
#   NICE             niceness of the build (default: 10; other people share the cores)
# Progress goes to stderr; stdout's last line is the bin directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { printf '[control-plane/build] %s\n' "$*" >&2; }

# Bump when the way the binaries are built changes (flags, names), so that the
# cache key changes even though the go.mod/go.sum files did not.
RECIPE=1

GO=${GO:-$(command -v go || true)}
GO=${GO:-/usr/local/go/bin/go}
[ -x "$GO" ] || { log "no go command (set GO=/path/to/go)"; exit 1; }

k8s_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
[ -n "$k8s_version" ] || { log "k8s.io/kubernetes version not found in $here/go.mod"; exit 1; }
helm_version=$(awk '$1 == "helm.sh/helm/v4" && $2 ~ /^v/ {print $2; exit}' "$here/helm/go.mod")
kwok_version=$(awk '$1 == "sigs.k8s.io/kwok" && $2 ~ /^v/ {print $2; exit}' "$here/kwok/go.mod")

key=$( {
    echo "recipe=$RECIPE"
    for m in . kwok helm; do cat "$here/$m/go.mod" "$here/$m/go.sum"; done
} | sha256sum | cut -c1-12)

cache_root=${KUBELOAD_CACHE:-${HOME:-/tmp}/.cache/kubeload}
dest="$cache_root/control-plane/$k8s_version-$key"
bin="$dest/bin"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm)

all_built() {
    local b
    for b in "${binaries[@]}"; do [ -x "$bin/$b" ] || return 1; done
}

if all_built; then
    log "up to date: $bin"
    echo "$bin"
    exit 0
fi

mkdir -p "$cache_root/control-plane"
# One build at a time per cache (parallel test sessions would race otherwise).
exec 9>"$cache_root/control-plane/.build.lock"
log "waiting for the build lock $cache_root/control-plane/.build.lock"
flock 9
if all_built; then
    log "built meanwhile by another process: $bin"
    echo "$bin"
    exit 0
fi

mkdir -p "$dest"
tmp=$(mktemp -d "$dest/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

export CGO_ENABLED=0
# GOFLAGS may carry the user's own flags; keep them and add ours.
export GOFLAGS="${GOFLAGS:-} -mod=readonly"
start=$(date +%s)
log "go: $("$GO" version)"
log "building Kubernetes $k8s_version, kwok $kwok_version, helm $helm_version into $bin"
log "(first build: tens of minutes on 2 cores and ~1.5 GB of module cache; later ones: a minute)"

minor=${k8s_version#v1.}; minor=${minor%%.*}
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kube_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    kube_ldflags+=" -X $pkg.gitTreeState=clean"
done

gobuild() { # dir outdir ldflags packages...
    local dir=$1 out=$2 ldflags=$3
    shift 3
    log "go build -o $out $*"
    (cd "$dir" && nice -n "${NICE:-10}" "$GO" build -trimpath -ldflags="$ldflags" -o "$out" "$@") >&2
}

# One go build for the Kubernetes binaries: they share most of their packages.
mkdir -p "$tmp/kube"
gobuild "$here" "$tmp/kube/" "$kube_ldflags" \
    go.etcd.io/etcd/server/v3 \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl
# go names the etcd server binary after its module path: .../server/v3 -> server
mv "$tmp/kube/server" "$tmp/etcd"
mv "$tmp/kube/"* "$tmp/"
rmdir "$tmp/kube"

gobuild "$here/kwok" "$tmp/kwok" "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${kwok_version#v}" \
    sigs.k8s.io/kwok/cmd/kwok
gobuild "$here/helm" "$tmp/helm" "-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
    helm.sh/helm/v4/cmd/helm

mkdir -p "$bin"
for b in "${binaries[@]}"; do
    [ -x "$tmp/$b" ] || { log "missing after the build: $b"; exit 1; }
    mv -f "$tmp/$b" "$bin/$b"
done
secs=$(( $(date +%s) - start ))
{
    echo "kubernetes=$k8s_version kwok=$kwok_version helm=$helm_version"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ) seconds=$secs go=$("$GO" env GOVERSION)"
} > "$dest/build-info.txt"
log "built in ${secs}s: ${binaries[*]}"
echo "$bin"

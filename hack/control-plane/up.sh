#!/usr/bin/env bash
# Start a throw-away Kubernetes control plane for tests:
#   etcd (data on /dev/shm, no fsync) -> kube-apiserver -> kube-controller-manager
#   + kube-scheduler -> kwok playing one node ("kwok-node-0", no taint).
#
#   hack/control-plane/up.sh STATE_DIR
#
# Writes STATE_DIR/kubeconfig, STATE_DIR/cluster.env (KUBECONFIG, SERVER, TOKEN,
# BIN, ...), STATE_DIR/pids ("name pid" lines, for down.sh) and STATE_DIR/logs/.
# All ports are free loopback ports picked at start. BIN (the binaries) defaults
# to the output of build.sh. Stop it with hack/control-plane/down.sh STATE_DIR.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { printf '[control-plane/up] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ $# -eq 1 ] || die "usage: $0 STATE_DIR"
mkdir -p "$1"
state=$(cd "$1" && pwd)
logs="$state/logs"
pki="$state/pki"
pids="$state/pids"
node=${KWOK_NODE_NAME:-kwok-node-0}
timeout=${CONTROL_PLANE_TIMEOUT:-120}

if [ -s "$pids" ]; then
    while read -r name pid _; do
        if kill -0 "$pid" 2>/dev/null; then
            die "$state already runs $name (pid $pid); run down.sh $state first"
        fi
    done < "$pids"
fi

if [ -z "${BIN:-}" ]; then
    BIN=$("$here/build.sh" | tail -1)
fi
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is missing (run build.sh)"
done

rm -rf "$logs" "$pki"
mkdir -p "$logs" "$pki"
: > "$pids"

# If anything below fails, stop what was started already.
started_ok=0
cleanup_on_error() {
    if [ "$started_ok" != 1 ]; then
        log "start failed; logs are in $logs; stopping what was started"
        for f in "$logs"/*.log; do
            [ -f "$f" ] || continue
            log "--- last lines of $f"
            tail -n 15 "$f" >&2 || true
        done
        "$here/down.sh" "$state" >&2 || true
    fi
}
trap cleanup_on_error EXIT

free_ports() { # count -> that many distinct free loopback TCP ports
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
read -r etcd_port etcd_peer_port api_port < <(free_ports 3)

start() { # name command... : runs it detached, logs to logs/name.log, records its pid
    local name=$1
    shift
    setsid "$@" </dev/null >"$logs/$name.log" 2>&1 &
    echo "$name $!" >> "$pids"
    log "started $name (pid $!)"
}

alive() { # name -> fails (with its log) when the process has died
    local pid
    pid=$(awk -v n="$1" '$1 == n {print $2}' "$pids")
    kill -0 "$pid" 2>/dev/null || die "$1 exited; see $logs/$1.log"
}

wait_for() { # description seconds command... : polls until the command succeeds
    local what=$1 secs=$2 deadline
    shift 2
    deadline=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${secs}s waiting for $what"
        sleep 0.5
    done
    log "$what: ok"
}

# --- credentials -----------------------------------------------------------
log "making keys and certificates in $pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=kubeload-test-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
    > "$pki/apiserver.ext"
openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 30 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" 2>/dev/null
openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
token=$(openssl rand -hex 24)
echo "$token,kubeload-admin,kubeload-admin,\"system:masters\"" > "$pki/tokens.csv"
chmod 600 "$pki"/*.key "$pki/tokens.csv"

server="https://127.0.0.1:$api_port"
kubeconfig="$state/kubeconfig"
umask_old=$(umask)
umask 077
cat > "$kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kubeload-test
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 < "$pki/ca.crt")
users:
- name: kubeload-admin
  user:
    token: $token
contexts:
- name: kubeload-test
  context:
    cluster: kubeload-test
    user: kubeload-admin
    namespace: default
current-context: kubeload-test
EOF
umask "$umask_old"
kubectl() { "$BIN/kubectl" --kubeconfig "$kubeconfig" "$@"; }

# --- etcd ------------------------------------------------------------------
shm=/dev/shm
[ -d "$shm" ] && [ -w "$shm" ] || shm=${TMPDIR:-/tmp}
etcd_data=$(mktemp -d "$shm/kubeload-etcd.XXXXXX")
echo "$etcd_data" > "$state/etcd-data-dir"
start etcd "$BIN/etcd" \
    --name=kubeload \
    --data-dir="$etcd_data" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="kubeload=http://127.0.0.1:$etcd_peer_port" \
    --unsafe-no-fsync \
    --log-level=warn
wait_for "etcd health" 30 bash -c "curl -fsS http://127.0.0.1:$etcd_port/health | grep -q '\"health\":\"true\"'"

# --- kube-apiserver --------------------------------------------------------
start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$api_port" \
    --cert-dir="$pki" \
    --tls-cert-file="$pki/apiserver.crt" \
    --tls-private-key-file="$pki/apiserver.key" \
    --token-auth-file="$pki/tokens.csv" \
    --authorization-mode=RBAC \
    --service-cluster-ip-range=10.0.0.0/24 \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --disable-admission-plugins=ServiceAccount \
    --endpoint-reconciler-type=none \
    --allow-privileged=true \
    --profiling=false
wait_for "kube-apiserver /readyz" "$timeout" bash -c \
    "kill -0 $(awk '$1 == "kube-apiserver" {print $2}' "$pids") && curl -fsS --cacert '$pki/ca.crt' -H 'Authorization: Bearer $token' '$server/readyz'"

# --- controller manager and scheduler -----------------------------------------
start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$kubeconfig" \
    --authentication-kubeconfig="$kubeconfig" \
    --authorization-kubeconfig="$kubeconfig" \
    --leader-elect=false \
    --secure-port=0 \
    --controllers='*' \
    --use-service-account-credentials=false \
    --service-account-private-key-file="$pki/sa.key" \
    --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" \
    --cluster-signing-key-file="$pki/ca.key" \
    --concurrent-gc-syncs=5 \
    --profiling=false
start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$kubeconfig" \
    --authentication-kubeconfig="$kubeconfig" \
    --authorization-kubeconfig="$kubeconfig" \
    --leader-elect=false \
    --secure-port=0 \
    --profiling=false

# --- kwok and its node -------------------------------------------------------
mkdir -p "$state/kwok-home"
stage_flags=()
for f in "$here"/kwok-stages/*.yaml; do stage_flags+=("--config=$f"); done
# HOME: keep kwok from reading the user's ~/.kwok/kwok.yaml.
start kwok env HOME="$state/kwok-home" "$BIN/kwok" \
    --kubeconfig="$kubeconfig" \
    "${stage_flags[@]}" \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-ip=127.0.0.1 \
    --cidr=127.10.0.0/16 \
    --node-lease-duration-seconds=40
kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $node
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: $node
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
spec: {}
EOF

alive etcd; alive kube-apiserver; alive kube-controller-manager; alive kube-scheduler; alive kwok
wait_for "node $node Ready" "$timeout" kubectl wait --for=condition=Ready "node/$node" --timeout=5s
# The service-account controller (kube-controller-manager) makes this one.
wait_for "kube-controller-manager (default ServiceAccount)" "$timeout" kubectl get serviceaccount default -n default
alive kube-scheduler; alive kwok

cat > "$state/cluster.env" <<EOF
KUBECONFIG=$kubeconfig
SERVER=$server
TOKEN=$token
BIN=$BIN
CA_FILE=$pki/ca.crt
NODE_NAME=$node
ETCD_URL=http://127.0.0.1:$etcd_port
EOF
chmod 600 "$state/cluster.env"
started_ok=1
log "control plane up: $server (kubeconfig: $kubeconfig)"
echo "$kubeconfig"

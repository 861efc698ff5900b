#!/usr/bin/env bash
# `make demo`: Keyward's main job, end to end, on a local control plane with a real node.
# A vendor mints a key pair and a license; the platform team installs the chart; the operator Pod
# verifies the key offline and rolls it out to the quickstart's workload Pods; then a renewal the
# running Pods pick up live, and a tampered key that never reaches them.
#
#   KEYWARD_BIN          use this keyward binary instead of building one
#   KEYWARD_IMAGES_DIR   use the image tars there instead of building them (hack/images.sh)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH=$ROOT/bin:$PATH

if [ -t 1 ]; then
  step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  step() { printf '\n== %s\n' "$*"; }
fi
run() { printf '$ %s\n' "$*" >&2; "$@"; }
# A pipeline, shown as the user would type it.
pipe() { printf '$ %s\n' "$1" >&2; bash -c "$1"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

[ "$(uname -s)" = Linux ] || die "the demo's node needs Linux (containerd, runc, cgroups)"
[ "$(id -u)" = 0 ] || die "the demo's node needs root: the kubelet mounts volumes and runc makes containers"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/keyward-demo.XXXXXX")
cleanup() {
  # No errexit here: every step must run, whatever the one before returned.
  set +e
  "$ROOT/hack/envtest.sh" stop "$WORK/cp" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

step "Building keyward and its images; starting kube-apiserver, etcd and a node (containerd, kubelet)"
hack/envtest.sh tools >/dev/null
if [ -z "${KEYWARD_BIN:-}" ]; then
  cargo build --quiet --locked --bin keyward
  KEYWARD_BIN=$ROOT/target/debug/keyward
fi
KEYWARD=$KEYWARD_BIN
IMAGES=$(cd "${KEYWARD_IMAGES_DIR:-$ROOT/target/images}" 2>/dev/null && pwd) || IMAGES=$ROOT/target/images
if [ -z "${KEYWARD_IMAGES_DIR:-}" ]; then
  KEYWARD_IMAGE_PROFILE=${KEYWARD_IMAGE_PROFILE:-quick-release} hack/images.sh "$IMAGES" 2>&1 | grep -v '^ ' >&2
fi
export KUBECONFIG
KUBECONFIG=$(hack/envtest.sh start "$WORK/cp" --owner-pid $$ --node --images "$IMAGES")
APISERVER_PORT=$(cat "$WORK/cp/apiserver.port")
kubectl version 2>/dev/null | grep Server
run kubectl get nodes

# The kubelet refuses to publish a loopback address, so the API server cannot reach it for
# `kubectl logs`; a Pod's log is read where the kubelet writes it.
pod_log() { # namespace pod container
  local uid; uid=$(kubectl get pod -n "$1" "$2" -o jsonpath='{.metadata.uid}')
  cat /var/log/pods/"$1_$2_$uid"/"$3"/*.log 2>/dev/null | cut -d' ' -f4-
}

step "Vendor: a signing key pair and a one-year license for Acme"
cd "$WORK"
run "$KEYWARD" keygen --private-key vendor.key --public-key vendor.pub --kid vendor-2026
run "$KEYWARD" issue --signing-key vendor.key --kid vendor-2026 --licensee "Acme Corp" --product zizq \
  --valid-for 1y --tier pro --features queues,sso --seats 25 >acme.lic
echo "wrote acme.lic ($(wc -c <acme.lic) bytes)"
run "$KEYWARD" inspect @acme.lic --public-key vendor.pub --product zizq

step "Platform team: helm install, trusting only the vendor's public key"
echo "(this node has no Pod network: Pods share the node's, and reach the API server on loopback)"
IMAGE=$(cat "$IMAGES/keyward.ref")
run helm install keyward "$ROOT/charts/keyward" -n keyward --create-namespace \
  --set-file trustedKeys.vendor-2026=vendor.pub \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
  --set hostNetwork=true --set listenAddress=127.0.0.1 --set logFormat=text \
  --set 'extraEnv[0].name=KUBERNETES_SERVICE_HOST' --set 'extraEnv[0].value=127.0.0.1' \
  --set 'extraEnv[1].name=KUBERNETES_SERVICE_PORT' --set-string "extraEnv[1].value=$APISERVER_PORT" \
  2> >(grep -v 'memcache.go' >&2) | sed -n '1,6p'
run kubectl -n keyward rollout status deployment/keyward --timeout=120s
OPERATOR_POD=$(kubectl -n keyward get pods -l app.kubernetes.io/instance=keyward -o jsonpath='{.items[0].metadata.name}')

step "Application team: the key in a Secret, the License and the workload from examples/quickstart"
run kubectl create secret generic acme-license --from-file=license=acme.lic --save-config
run kubectl apply -f "$ROOT/examples/quickstart/license.yaml"
run kubectl create configmap zizq-vendor-key --from-file=vendor.pem=vendor.pub
pipe "kubectl patch --local -f $ROOT/examples/quickstart/workload.yaml --type merge -p '{\"spec\":{\"template\":{\"spec\":{\"hostNetwork\":true}}}}' -o yaml | kubectl apply -f -"
wait_for() { # what jsonpath expected
  for _ in $(seq 1 600); do
    [ "$(kubectl get "$1" -o "jsonpath=$2" 2>/dev/null)" = "$3" ] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1 $2 = $3" >&2; exit 1
}
wait_for license/zizq '{.status.state}' Active
wait_for license/zizq '{.status.rollout.summary}' 1/1
run kubectl rollout status deployment/zizq --timeout=120s
run kubectl get licenses -o wide
run kubectl get pods -l app=zizq
POD=$(kubectl get pods -l app=zizq -o jsonpath='{.items[0].metadata.name}')
log_has() { # pattern: wait until the workload Pod's log has it
  for _ in $(seq 1 600); do
    pod_log default "$POD" zizq | grep -q "$1" && return 0
    sleep 0.1
  done
  echo "timed out waiting for '$1' in $POD's log" >&2; exit 1
}
log_has "license validated"
echo
echo "Pod $POD's own log (/var/log/pods):"
pod_log default "$POD" zizq | sed 's/^/  /'
SEEN=$(pod_log default "$POD" zizq | wc -l)

step "Renewal: the vendor issues a two-year enterprise key; the Secret is updated in place"
"$KEYWARD" issue --signing-key vendor.key --kid vendor-2026 --licensee "Acme Corp" --product zizq \
  --valid-for 2y --tier enterprise --features queues,sso,audit --seats 100 >renewed.lic
pipe "kubectl create secret generic acme-license --from-file=license=renewed.lic --dry-run=client -o yaml | kubectl apply -f - >/dev/null"
START=$(date +%s%N)
log_has "license key file changed"
log_has 'tier="enterprise"'
echo "the running Pod read the renewed key $(( ($(date +%s%N) - START) / 1000000 )) ms after the Secret changed (it looks at its file once a second):"
pod_log default "$POD" zizq | tail -n +"$((SEEN + 1))" | sed 's/^/  /'
run kubectl get pods -l app=zizq
echo "(same Pods, RESTARTS 0: the key changed under a running process)"
run kubectl get licenses -o wide
SEEN=$(pod_log default "$POD" zizq | wc -l)

step "A bad key: a tampered license is refused and never reaches the workload"
# Change one character inside the signature.
t=$(tr -d '\n' <renewed.lic); i=$((${#t} - 20)); c=${t:$i:1}
if [ "$c" = A ]; then r=B; else r=A; fi
printf '%s%s%s' "${t:0:$i}" "$r" "${t:$((i + 1))}" >tampered.lic
pipe "kubectl create secret generic acme-license --from-file=license=tampered.lic --dry-run=client -o yaml | kubectl apply -f - >/dev/null"
wait_for license/zizq '{.status.state}' Invalid
run kubectl get licenses
echo "Valid condition: $(kubectl get license zizq -o jsonpath='{.status.conditions[?(@.type=="Valid")].reason}: {.status.conditions[?(@.type=="Valid")].message}')"
sleep 3 # a nudged Pod sees a change within a second; three show that none came
if [ "$(pod_log default "$POD" zizq | wc -l)" != "$SEEN" ]; then die "the workload saw a change after the tampered key"; fi
echo "Pod $POD: no new log line; still running on the last good key:"
run kubectl get pods -l app=zizq
run "$KEYWARD" status zizq

step "Operator Pod's log"
pod_log keyward "$OPERATOR_POD" keyward | grep -E "license validated|refused" | sed -E 's/^[^ ]+ +//' | cut -c1-220
echo
echo "Demo complete: the node, its Pods and the control plane are stopped."

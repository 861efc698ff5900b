#!/usr/bin/env bash
# `make demo`: Keyward's main job, end to end, on a local control plane.
# A vendor mints a key pair and a license; the operator verifies it offline and rolls it out; then
# a renewal and a bad key, with `kubectl get licenses` after each.
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

WORK=$(mktemp -d "${TMPDIR:-/tmp}/keyward-demo.XXXXXX")
OPERATOR_PID=""
cleanup() {
  # No errexit here: every step must run, whatever the one before returned.
  set +e
  if [ -n "$OPERATOR_PID" ]; then
    kill "$OPERATOR_PID" 2>/dev/null
    wait "$OPERATOR_PID" 2>/dev/null
  fi
  "$ROOT/hack/envtest.sh" stop "$WORK/cp" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

step "Building keyward and starting a local kube-apiserver + etcd"
hack/envtest.sh tools >/dev/null
cargo build --quiet --locked --bin keyward
KEYWARD=$ROOT/target/debug/keyward
export KUBECONFIG
KUBECONFIG=$(hack/envtest.sh start "$WORK/cp" --owner-pid $$)
kubectl version 2>/dev/null | grep Server
run kubectl apply -f crds/

step "Vendor: a signing key pair and a one-year license for Acme"
cd "$WORK"
run "$KEYWARD" keygen --private-key vendor.key --public-key vendor.pub --kid vendor-2026
run "$KEYWARD" issue --signing-key vendor.key --kid vendor-2026 --licensee "Acme Corp" --product zizq \
  --valid-for 1y --tier pro --features queues,sso --seats 25 >acme.lic
echo "wrote acme.lic ($(wc -c <acme.lic) bytes)"
run "$KEYWARD" inspect @acme.lic --public-key vendor.pub --product zizq

step "Platform team: the operator trusts only the vendor's public key"
mkdir trusted-keys && cp vendor.pub trusted-keys/vendor-2026.pem
"$KEYWARD" controller --kubeconfig "$KUBECONFIG" --trusted-keys trusted-keys --log-format text \
  --metrics-addr 127.0.0.1:0 --health-addr 127.0.0.1:0 2>operator.log &
OPERATOR_PID=$!
echo "operator running (pid $OPERATOR_PID, log $WORK/operator.log)"

step "Application team: the key in a Secret, the License and workload from examples/"
run kubectl create secret generic acme-license --from-file=license=acme.lic --save-config
run kubectl apply -f "$ROOT/examples/quickstart/license.yaml"
wait_for() { # jsonpath expected
  for _ in $(seq 1 100); do
    [ "$(kubectl get license zizq -o "jsonpath=$1" 2>/dev/null)" = "$2" ] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1 = $2" >&2; tail -20 operator.log >&2; exit 1
}
wait_for '{.status.state}' Active
wait_for '{.status.rollout.summary}' 1/1
run kubectl get licenses
run kubectl get licenses -o wide
echo
echo "The workload's Secret holds the verified key and its state:"
pipe "kubectl get secret zizq-license -o jsonpath='{.data.license\.json}' | base64 -d"
run "$KEYWARD" status zizq

step "Renewal: the vendor issues a two-year enterprise key; the Secret is updated in place"
"$KEYWARD" issue --signing-key vendor.key --kid vendor-2026 --licensee "Acme Corp" --product zizq \
  --valid-for 2y --tier enterprise --features queues,sso,audit --seats 100 >renewed.lic
pipe "kubectl create secret generic acme-license --from-file=license=renewed.lic --dry-run=client -o yaml | kubectl apply -f - >/dev/null"
wait_for '{.status.tier}' enterprise
run kubectl get licenses -o wide
echo "rolled out: $(kubectl get secret zizq-license -o jsonpath='{.data.license\.json}' | base64 -d | grep -E '"tier"')"

step "A bad key: a tampered license is refused and never rolled out"
# Change one character inside the signature.
t=$(tr -d '\n' <renewed.lic); i=$((${#t} - 20)); c=${t:$i:1}
if [ "$c" = A ]; then r=B; else r=A; fi
printf '%s%s%s' "${t:0:$i}" "$r" "${t:$((i + 1))}" >tampered.lic
pipe "kubectl create secret generic acme-license --from-file=license=tampered.lic --dry-run=client -o yaml | kubectl apply -f - >/dev/null"
wait_for '{.status.state}' Invalid
run kubectl get licenses
echo "Valid condition: $(kubectl get license zizq -o jsonpath='{.status.conditions[?(@.type=="Valid")].reason}: {.status.conditions[?(@.type=="Valid")].message}')"
echo "still rolled out: $(kubectl get secret zizq-license -o jsonpath='{.data.license\.json}' | base64 -d | grep -E '"tier"')  (the last good key)"
run "$KEYWARD" status zizq

step "Operator log (Zizq-style)"
grep -E "license validated|refused" operator.log | sed -E 's/^[^ ]+ +//' | cut -c1-220
echo
echo "Demo complete: the control plane and operator are stopped."

#!/usr/bin/env bash
# `make e2e-kind`, for users with Docker: the tested e2e flow on a kind cluster with real images.
# kind cluster -> images built and loaded -> helm install -> demo API -> the quickstart LoadTest
# -> kubectl wait for Succeeded -> kubectl get lt. Needs docker, kind, kubectl and helm on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
cluster=${KIND_CLUSTER:-kubeload}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
registry=${REGISTRY:-ghcr.io/kubeload}
worker_image=$registry/kubeload:$version
operator_image=$registry/kubeload-operator:$version

kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --wait 120s
make images REGISTRY="$registry"
kind load docker-image --name "$cluster" "$worker_image" "$operator_image"

helm upgrade --install kubeload charts/kubeload --namespace kubeload-system --create-namespace --wait \
  --set image.repository="$registry/kubeload-operator" --set image.tag="$version" \
  --set worker.image.repository="$registry/kubeload" --set worker.image.tag="$version" \
  --set worker.image.pullPolicy=Never
helm test kubeload -n kubeload-system

kubectl create secret generic demo-creds --from-literal=client-secret="demo-$RANDOM$RANDOM" \
  --dry-run=client -o yaml | kubectl apply -f -
sed "s|KUBELOAD_WORKER_IMAGE|$worker_image|" hack/kind/demo-target.yaml | kubectl apply -f -
kubectl rollout status deployment/demo-target --timeout=120s

kubectl delete -f examples/cluster-quickstart.yaml --ignore-not-found --wait
kubectl apply -f examples/cluster-quickstart.yaml
kubectl wait --for=condition=Succeeded lt/cluster-quickstart --timeout=10m
kubectl get lt

#!/usr/bin/env bash
# Builds the pinned tools of hack/tools/go.mod into bin/ (or $1). A tool is
# rebuilt only when its stamp (the tool's pinned module version) changed, so a
# warm machine starts in seconds. Also copies kwok's stage manifests, which the
# emulated cluster passes to kwok.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../bin}
mkdir -p "$bin"
bin=$(cd "$bin" && pwd)
cd "$here"

version() { go list -m -f '{{.Version}}' "$1"; }

# name|package|module whose version pins it[|the module's folder, when not
# this one: tools whose dependencies must not move the control plane's]
tools=(
  "controller-gen|sigs.k8s.io/controller-tools/cmd/controller-gen|sigs.k8s.io/controller-tools"
  "etcd|go.etcd.io/etcd/server/v3|go.etcd.io/etcd/server/v3"
  "kube-apiserver|k8s.io/kubernetes/cmd/kube-apiserver|k8s.io/kubernetes"
  "kubectl|k8s.io/kubernetes/cmd/kubectl|k8s.io/kubernetes"
  "kube-controller-manager|k8s.io/kubernetes/cmd/kube-controller-manager|k8s.io/kubernetes"
  "kube-scheduler|k8s.io/kubernetes/cmd/kube-scheduler|k8s.io/kubernetes"
  "kubelet|k8s.io/kubernetes/cmd/kubelet|k8s.io/kubernetes"
  "kube-proxy|k8s.io/kubernetes/cmd/kube-proxy|k8s.io/kubernetes"
  "kwok|sigs.k8s.io/kwok/cmd/kwok|sigs.k8s.io/kwok"
  "helm|helm.sh/helm/v3/cmd/helm|helm.sh/helm/v3"
  "containerd|github.com/containerd/containerd/v2/cmd/containerd|github.com/containerd/containerd/v2|containerd"
  "containerd-shim-runc-v2|github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2|github.com/containerd/containerd/v2|containerd"
  "ctr|github.com/containerd/containerd/v2/cmd/ctr|github.com/containerd/containerd/v2|containerd"
  "kube-score|github.com/zegl/kube-score/cmd/kube-score|github.com/zegl/kube-score|kube-score"
)
for t in "${tools[@]}"; do
  IFS='|' read -r name pkg mod dir <<<"$t"
  cd "$here/${dir:-.}"
  want="$mod@$(version "$mod")"
  ldflags='-s -w'
  tags=
  case $mod in
  k8s.io/kubernetes)
    # As Kubernetes' own build does (hack/lib/version.sh): the binaries
    # report their version (helm checks a chart's kubeVersion against it).
    v=$(version "$mod")
    minor=$(echo "$v" | cut -d. -f2)
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    done
    want+="+version"
    ;;
  helm.sh/helm/v3)
    # As helm's own Makefile does: its version, and the Kubernetes version
    # that `helm template` and `helm lint` assume (that of its client-go).
    minor=$(version k8s.io/client-go | cut -d. -f2)
    ldflags+=" -X helm.sh/helm/v3/internal/version.version=$(version "$mod")"
    for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
      ldflags+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$minor"
    done
    want+="+k8s"
    ;;
  github.com/containerd/containerd/v2)
    # As containerd's own Makefile does for a static build without the
    # snapshotters this host lacks (the real nodes use overlayfs).
    tags='no_btrfs no_devmapper no_zfs no_aufs'
    ldflags+=" -X github.com/containerd/containerd/v2/version.Version=$(version "$mod")"
    ;;
  esac
  stamp="$bin/.$name.version"
  if [[ -x "$bin/$name" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    continue
  fi
  echo ">> building $name ($want)"
  start=$SECONDS
  go build -tags="$tags" -ldflags="$ldflags" -o "$bin/$name" "$pkg"
  echo "$want" >"$stamp"
  echo "   $name built in $((SECONDS - start)) s"
done

cd "$here"
stages="$bin/kwok-stages"
kwokdir=$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
mkdir -p "$stages"
for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
  node/chaos/node-not-ready.yaml pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml \
  pod/fast/pod-delete.yaml; do
  install -m 0644 "$kwokdir/kustomize/stage/$f" "$stages/$(echo "$f" | tr / -)"
done

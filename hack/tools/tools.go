//go:build tools

// Package tools pins the binaries PlanetKube builds for development, tests and
// the emulated cluster: a real Kubernetes control plane, etcd, kwok,
// controller-gen, helm (the chart's lint and tests), and a real node's
// kubelet and kube-proxy (containerd and kube-score have modules of their own
// in the folders below). `make tools` builds
// them into bin/.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "helm.sh/helm/v3/cmd/helm"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
	_ "sigs.k8s.io/kwok/cmd/kwok"
)

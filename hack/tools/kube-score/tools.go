//go:build tools

// Package tools pins kube-score, the outside linter `make lint` runs on the
// rendered chart. A module of its own: its Kubernetes libraries must not move
// the control plane's.
package tools

import (
	_ "github.com/zegl/kube-score/cmd/kube-score"
)

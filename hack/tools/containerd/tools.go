//go:build tools

// Package tools pins containerd, its runc shim and ctr for the real nodes of
// the tests and of `make run` (see internal/testing/realnode). A module of its
// own: containerd's dependencies must not move the control plane's.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)

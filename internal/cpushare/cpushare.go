// Package cpushare computes the CPU request of a sliver from its slice's
// CPU share, PlanetLab's cpu_share.
//
// A container's CPU request sets its cgroup's cpu weight, and a weight only
// matters when CPUs are contended: requests proportional to shares give each
// sliver a work-conserving fair share of the node's unreserved CPU, as
// PlanetLab's scheduler did, and slivers get no CPU limit, so an idle node's
// CPU is free for whoever wants it. Reserved CPU (from resource pools bound
// to slices) is taken out first.
//
// The request divides unreserved CPU by a fixed number of shares per node
// rather than by the shares of the slivers present. A sliver's request then
// does not change when other slices come and go, so Pods are not recreated,
// and the requests on a node stay within its allocatable CPU as long as the
// total shares of its slivers do not exceed sharesPerNode.
//
// It is the manager's half (the policy); the node agent's half, which
// keeps each sliver's cgroup weight as its request says, is
// internal/agent/cpu.
package cpushare

import "k8s.io/apimachinery/pkg/api/resource"

// DefaultSharesPerNode is the number of share units a node's unreserved CPU
// is divided into: a node hosts that many share-1 slivers before their
// requests exceed its allocatable CPU.
const DefaultSharesPerNode = 100

// CPURequest returns the CPU request of a sliver of a slice with the given
// share on a node: unreserved * share / sharesPerNode, where unreserved is
// allocatable - reserved (never below 0), rounded down to the millicore and
// at least 1m. share is clamped to [1, sharesPerNode]; a sharesPerNode below
// 1 means DefaultSharesPerNode.
func CPURequest(allocatable, reserved resource.Quantity, share, sharesPerNode int32) resource.Quantity {
	if sharesPerNode < 1 {
		sharesPerNode = DefaultSharesPerNode
	}
	share = max(1, min(share, sharesPerNode))
	unreserved := max(0, allocatable.MilliValue()-reserved.MilliValue())
	milli := max(1, unreserved*int64(share)/int64(sharesPerNode))
	return *resource.NewMilliQuantity(milli, resource.DecimalSI)
}

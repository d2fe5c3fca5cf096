package pools

import (
	"maps"
	"slices"
	"time"
)

// Why a candidate pool does not fit, by the part of its spec at fault.
const (
	FaultNodes   = "nodes"
	FaultSpec    = "spec"
	FaultPerNode = "perNode"
)

// Verdict is the judgement of a pool being admitted.
type Verdict struct {
	// Fault names the part of the spec at fault (FaultNodes, FaultSpec,
	// FaultPerNode); "" when the pool fits on every node it spans.
	Fault string
	// Why says what does not fit, and where.
	Why string
	// After is the accounting with the candidate in it.
	After Result
}

// Judge accounts candidate beside specs as if it were created after every
// one of them (the pool being admitted is judged last) and says why it does
// not fit: its nodes do not resolve, its spec is invalid, its amounts do not
// fit, or it would hold nothing on some of its nodes. A candidate with the
// key of a pool in specs replaces it.
func Judge(specs []Spec, nodes []NodeInfo, capacity Capacity, candidate Spec, now time.Time) Verdict {
	var latest time.Time
	all := make([]Spec, 0, len(specs)+1)
	for _, s := range specs {
		if s.Created.After(latest) {
			latest = s.Created
		}
		if s.Key != candidate.Key {
			all = append(all, s)
		}
	}
	candidate.Created = latest.Add(time.Second)
	all = append(all, candidate)
	resolved := Resolve(all, nodes)
	v := Verdict{After: Account(resolved, capacity, now)}
	r := v.After.Pools[candidate.Key]
	switch {
	case resolved[len(resolved)-1].Invalid != "":
		v.Fault, v.Why = FaultNodes, resolved[len(resolved)-1].Invalid
	case r.Invalid != "":
		v.Fault, v.Why = FaultSpec, r.Invalid
	case r.Overcommitted != "":
		v.Fault, v.Why = FaultPerNode, "does not fit: "+r.Overcommitted
	case len(r.Lost) > 0:
		v.Fault, v.Why = FaultNodes, r.Lost[slices.Min(slices.Collect(maps.Keys(r.Lost)))]
	}
	return v
}

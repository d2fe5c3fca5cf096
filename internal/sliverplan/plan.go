// Package sliverplan decides, for one slice, which slivers to create and
// which to delete, and says how far the slice is from its goal: a pure plan
// from the slice's sliver pods, the placement of its nodes and the state of
// each node (as cluster-api's MachineSet sync decides before it writes).
//
// The rules:
//   - Each node of the placement runs one current sliver: made from the
//     slice's current template and the amounts bound to the slice on that
//     node (its reservation). A node that is retained (not ready or
//     cordoned, but keeping the sliver it has) keeps it whatever it is.
//   - A missing sliver is created, unless a pod with its name still
//     terminates (it holds the name), the node's failed sliver waits for
//     its back-off, or the node has no room for one more pod.
//   - A sliver whose reservation or template changed is replaced make
//     before break: its successor is created first, and it goes once the
//     successor is Ready, or at once if the successor failed (a node too
//     full for both), so that the two cannot lock each other.
//   - Every other sliver goes: off the placement, finished, misnamed, or a
//     second one on a node; a failed one goes unless its node backs off. A
//     sliver on a node that no longer exists goes at once (no grace period:
//     no kubelet is left to finish it).
package sliverplan

import (
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/placement"
)

// maxMessage bounds the messages copied from pods into issues.
const maxMessage = 1024

// Sliver is what the plan reads of one pod of the slice.
type Sliver struct {
	// Name and Node are the pod's name and spec.nodeName.
	Name, Node string
	// TemplateHash and ReservedHash are what the sliver was made from.
	TemplateHash, ReservedHash string
	// Terminating is true once the pod has a deletionTimestamp.
	Terminating bool
	// Phase and Ready are the pod's phase and Ready condition.
	Phase corev1.PodPhase
	Ready bool
	// Reason and Message are the pod's status reason and message (OutOfcpu
	// and why, for a pod the kubelet rejected).
	Reason, Message string
	// WaitingReason and WaitingMessage are those of its first waiting
	// container (ContainerCreating, ErrImagePull, CrashLoopBackOff ...).
	WaitingReason, WaitingMessage string
}

// SliverOf reads a pod.
func SliverOf(p *corev1.Pod, templateHashKey, reservedHashKey string) Sliver {
	s := Sliver{
		Name: p.Name, Node: p.Spec.NodeName,
		TemplateHash: p.Annotations[templateHashKey], ReservedHash: p.Annotations[reservedHashKey],
		Terminating: !p.DeletionTimestamp.IsZero(), Phase: p.Status.Phase,
		Reason: p.Status.Reason, Message: p.Status.Message,
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			s.Ready = c.Status == corev1.ConditionTrue
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			s.WaitingReason, s.WaitingMessage = w.Reason, w.Message
			break
		}
	}
	return s
}

// live says whether the sliver is one of the slice's, on a node, under the
// name its reservation gives it, and not being deleted.
func (s *Sliver) live(slice string) bool {
	return s.Node != "" && !s.Terminating && s.Name == naming.ReservedSliverName(slice, s.Node, s.ReservedHash)
}

// Existing returns the nodes that have a live sliver of the slice, for
// placement to keep.
func Existing(slice string, slivers []Sliver) map[string]bool {
	out := map[string]bool{}
	for i := range slivers {
		if slivers[i].live(slice) {
			out[slivers[i].Node] = true
		}
	}
	return out
}

// Failed says whether the sliver failed (and is not yet being deleted).
func (s *Sliver) Failed() bool { return !s.Terminating && s.Phase == corev1.PodFailed }

// Input is everything the plan reads.
type Input struct {
	// Slice is the slice's name (sliver names derive from it).
	Slice string
	// TemplateHash identifies the slice's current sliver template.
	TemplateHash string
	// Reserved maps a node to the hash of the amounts bound to the slice
	// there and of its authority's allocation there; absent means neither.
	Reserved map[string]string
	// Slivers are the slice's pods, terminating ones included.
	Slivers []Sliver
	// Placement is where the slice must run.
	Placement placement.Result
	// NodeGone says whether a node no longer exists.
	NodeGone func(node string) bool
	// BackOff maps a node whose failed sliver must stay for now to the time
	// until the next try.
	BackOff map[string]time.Duration
	// NoRoom says why a node takes no new sliver now: a reason
	// (planetv1.ReasonNodeFull, ReasonNodeReserved) and a message; "" when
	// it takes one.
	NoRoom func(node string) (reason, message string)
}

// Delete is a sliver to delete.
type Delete struct {
	// Index is the sliver's index in Input.Slivers.
	Index int
	// Now: delete with no grace period (its node is gone).
	Now bool
}

// Plan is what to do, and how the slice stands.
type Plan struct {
	// Create lists the nodes that get a new sliver, sorted.
	Create []string
	// Delete lists the slivers to delete.
	Delete []Delete
	// Desired, Ready and Pending count the slivers the placement wants, the
	// current ones that are ready, and the others on ready nodes.
	Desired, Ready, Pending int
	// Matching is the number of nodes that match the slice's selection.
	Matching int
	// NoRoom counts the nodes that have no room for the sliver they need.
	NoRoom int
	// Issues says, for at most planetv1.MaxSliverIssues nodes (by name), why
	// their sliver is not ready.
	Issues []planetv1.SliverIssue
	// NodeIssues is Issues for every node, by name: each matching node that
	// is not ready or cordoned, and each node of the placement without a
	// ready current sliver.
	NodeIssues []planetv1.SliverIssue
	// ReadyRetained lists, by name, the nodes not ready or cordoned whose
	// sliver (kept) is still ready: they have an issue, and run a sliver.
	ReadyRetained []string
}

// Make computes the plan.
func Make(in Input) Plan {
	p := Plan{Desired: len(in.Placement.Run), Matching: in.Placement.Matching}
	isCurrent := func(s *Sliver) bool {
		return s.TemplateHash == in.TemplateHash && s.ReservedHash == in.Reserved[s.Node]
	}
	retained := toSet(in.Placement.Retained)
	run := toSet(in.Placement.Run)

	// byNode holds each node's live sliver, the current one if there are
	// two (a reservation changed: the new one runs while the old goes).
	byNode := map[string]*Sliver{}
	present := map[string]bool{} // every sliver name in use, terminating too
	for i := range in.Slivers {
		s := &in.Slivers[i]
		present[s.Name] = true
		if !s.live(in.Slice) {
			continue
		}
		if have := byNode[s.Node]; have == nil || (!isCurrent(have) && isCurrent(s)) {
			byNode[s.Node] = s
		}
	}

	// What to create: nodes to run with no current sliver, unless a pod
	// with the wanted name still terminates, or the node has no room.
	replacing := map[string]bool{} // nodes whose sliver's successor is being made
	noRoom := map[string]planetv1.SliverIssue{}
	for _, n := range in.Placement.Run {
		if have := byNode[n]; retained[n] || (have != nil && isCurrent(have)) {
			continue
		}
		if present[naming.ReservedSliverName(in.Slice, n, in.Reserved[n])] {
			continue
		}
		if reason, why := in.NoRoom(n); reason != "" {
			noRoom[n] = planetv1.SliverIssue{Node: n, Reason: reason, Message: truncate(why)}
			continue
		}
		p.Create = append(p.Create, n)
		replacing[n] = true
	}

	// What to delete.
	for i := range in.Slivers {
		s := &in.Slivers[i]
		if s.Terminating {
			continue
		}
		successor := byNode[s.Node]
		_, backingOff := in.BackOff[s.Node]
		live := s.Phase != corev1.PodSucceeded && (s.Phase != corev1.PodFailed || (backingOff && successor == s))
		successorPending := successor != nil && successor != s && isCurrent(successor) &&
			!successor.Ready && successor.Phase != corev1.PodFailed
		keep := run[s.Node] && live &&
			(successor == s && (isCurrent(s) || retained[s.Node] || replacing[s.Node]) || successorPending)
		if !keep {
			p.Delete = append(p.Delete, Delete{Index: i, Now: in.NodeGone(s.Node)})
		}
	}

	// How the slice stands.
	for _, is := range in.Placement.Issues {
		p.Issues = append(p.Issues, planetv1.SliverIssue{Node: is.Node, Reason: is.Reason, Message: is.Message})
	}
	for _, n := range in.Placement.Run {
		s := byNode[n]
		current := s != nil && (isCurrent(s) || retained[n])
		if current && s.Ready {
			p.Ready++
			if retained[n] {
				p.ReadyRetained = append(p.ReadyRetained, n)
			}
			continue
		}
		if retained[n] {
			continue // reported by placement
		}
		p.Pending++
		switch {
		case noRoom[n].Reason != "":
			p.NoRoom++
			p.Issues = append(p.Issues, noRoom[n])
		default:
			p.Issues = append(p.Issues, issue(n, s, current, in.BackOff))
		}
	}
	sort.Slice(p.Issues, func(i, j int) bool { return p.Issues[i].Node < p.Issues[j].Node })
	p.NodeIssues = p.Issues
	if len(p.Issues) > planetv1.MaxSliverIssues {
		p.Issues = p.Issues[:planetv1.MaxSliverIssues:planetv1.MaxSliverIssues]
	}
	return p
}

// issue says why the sliver on a node is not ready.
func issue(node string, s *Sliver, current bool, backOff map[string]time.Duration) planetv1.SliverIssue {
	switch {
	case s == nil:
		return planetv1.SliverIssue{Node: node, Reason: planetv1.SliverIssueNotCreated, Message: "the sliver is being created"}
	case !current:
		return planetv1.SliverIssue{Node: node, Reason: planetv1.SliverIssueReplacing, Message: "the old sliver is being replaced"}
	case s.Phase == corev1.PodFailed:
		reason := s.Reason
		if reason == "" {
			reason = string(corev1.PodFailed)
		}
		msg := s.Message
		if left, ok := backOff[node]; ok {
			msg = fmt.Sprintf("%s (the sliver failed; a new one is tried in %s)", msg, left.Round(time.Second))
		}
		return planetv1.SliverIssue{Node: node, Reason: reason, Message: truncate(msg)}
	case s.WaitingReason != "":
		return planetv1.SliverIssue{Node: node, Reason: s.WaitingReason, Message: truncate(s.WaitingMessage)}
	}
	reason := string(s.Phase)
	if reason == "" {
		reason = string(corev1.PodPending)
	}
	return planetv1.SliverIssue{Node: node, Reason: reason, Message: truncate(s.Message)}
}

func toSet(list []string) map[string]bool {
	set := make(map[string]bool, len(list))
	for _, s := range list {
		set[s] = true
	}
	return set
}

// truncate cuts s to at most maxMessage bytes.
func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage]
}

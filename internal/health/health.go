// Package health decides the conditions that GitOps tools read as an
// object's health. Flux, `kubectl wait` and cli-utils' kstatus look at
// observedGeneration and two "abnormal-true" conditions: Reconciling (True
// while the object converges by itself) and Stalled (True when it cannot
// progress without a change by someone). Argo CD reads the same through the
// chart's health scripts. Each controller decides its kind's Ready
// condition; Set derives Reconciling and Stalled from it with the kind's
// Rules, so that every kind says the same thing the same way.
package health

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
)

// State is an object's health as kstatus computes it.
type State string

const (
	// Current: the object is as asked (Ready, or a state its owner chose,
	// such as a disabled site).
	Current State = "Current"
	// InProgress: the object is converging (Reconciling).
	InProgress State = "InProgress"
	// Failed: the object is stuck until something changes (Stalled).
	Failed State = "Failed"
)

// Rules maps the reasons of a kind's Ready=False to InProgress or Failed.
// A reason not listed is InProgress: an unknown failure is taken as
// transient and retried. Ready=True is always Current: a state the owner
// asked for (a suspended slice, a disabled site) is Ready, because kstatus
// reads Ready=False as InProgress.
type Rules map[string]State

// Of returns the health a Ready condition means under the rules.
func (r Rules) Of(ready metav1.Condition) State {
	if ready.Status == metav1.ConditionTrue {
		return Current
	}
	if s, ok := r[ready.Reason]; ok {
		return s
	}
	return InProgress
}

// Set writes ready into conds, and Reconciling or Stalled as the rules
// make of it (same reason and message as Ready, the observed generation of
// ready); the one that is not True is removed, as kstatus and Flux expect.
func Set(conds *[]metav1.Condition, ready metav1.Condition, rules Rules) {
	ready.Type = planetv1.ConditionReady
	meta.SetStatusCondition(conds, ready)
	state := rules.Of(ready)
	for _, c := range []struct {
		typ  string
		when State
	}{{planetv1.ConditionReconciling, InProgress}, {planetv1.ConditionStalled, Failed}} {
		if state != c.when {
			meta.RemoveStatusCondition(conds, c.typ)
			continue
		}
		meta.SetStatusCondition(conds, metav1.Condition{
			Type: c.typ, Status: metav1.ConditionTrue, Reason: ready.Reason,
			Message: ready.Message, ObservedGeneration: ready.ObservedGeneration,
		})
	}
}

// Truncate cuts a condition's or an event's message to at most n bytes.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary: a split rune would be sent as U+FFFD, three
	// bytes, and could carry the string past the field's MaxLength.
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

package health

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/ticket"
)

func TestRulesOf(t *testing.T) {
	cases := []struct {
		name   string
		rules  Rules
		status metav1.ConditionStatus
		reason string
		want   State
	}{
		{"ready slice", SliceRules, metav1.ConditionTrue, planetv1.ReasonSliversReady, Current},
		{"suspended slice is Ready", SliceRules, metav1.ConditionTrue, planetv1.ReasonSuspended, Current},
		{"slivers starting", SliceRules, metav1.ConditionFalse, planetv1.ReasonSliversPending, InProgress},
		{"slice namespace step retried", SliceRules, metav1.ConditionFalse, planetv1.ReasonNamespaceFailed, InProgress},
		{"slice expired", SliceRules, metav1.ConditionFalse, planetv1.ReasonExpired, Failed},
		{"slice of a disabled site", SliceRules, metav1.ConditionFalse, planetv1.ReasonSiteDisabled, Failed},
		{"slice over the site's limit", SliceRules, metav1.ConditionFalse, planetv1.ReasonSiteSliceLimit, Failed},
		{"slice matching no node", SliceRules, metav1.ConditionFalse, planetv1.ReasonNoMatchingNodes, Failed},
		{"slice whose nodes are all not ready", SliceRules, metav1.ConditionFalse, planetv1.ReasonNoReadyNodes, InProgress},
		{"disabled site is as asked", SiteRules, metav1.ConditionTrue, planetv1.ReasonSiteDisabled, Current},
		{"site namespace conflict", SiteRules, metav1.ConditionFalse, planetv1.ReasonNamespaceConflict, Failed},
		{"site step retried", SiteRules, metav1.ConditionFalse, planetv1.ReasonAccessFailed, InProgress},
		{"pool not accounted yet", PoolRules, metav1.ConditionFalse, planetv1.ReasonPoolAccounting, InProgress},
		{"pool invalid", PoolRules, metav1.ConditionFalse, planetv1.ReasonPoolInvalid, Failed},
		{"pool lost nodes", PoolRules, metav1.ConditionFalse, planetv1.ReasonNodesMissing, Failed},
		{"ticket redeemed", TicketRules, metav1.ConditionTrue, planetv1.ReasonRedeemed, Current},
		{"ticket superseded", TicketRules, metav1.ConditionFalse, planetv1.ReasonSuperseded, Failed},
		{"ticket not yet valid", TicketRules, metav1.ConditionFalse, string(ticket.NotYetValid), InProgress},
		{"ticket write retried", TicketRules, metav1.ConditionFalse, planetv1.ReasonRedeemFailed, InProgress},
		{"ticket forged", TicketRules, metav1.ConditionFalse, string(ticket.BadSignature), Failed},
		{"ticket revoked by a withdrawal", TicketRules, metav1.ConditionFalse, string(ticket.Revoked), Failed},
		{"withdrawal redeemed", TicketRules, metav1.ConditionTrue, planetv1.ReasonWithdrawn, Current},
		{"ticket whose authority's namespace is another's", TicketRules, metav1.ConditionFalse, planetv1.ReasonNamespaceConflict, Failed},
		{"ticket expired", TicketRules, metav1.ConditionFalse, string(ticket.Expired), Failed},
		{"authority without keys", AuthorityRules, metav1.ConditionFalse, planetv1.ReasonNoValidKeys, Failed},
		{"unknown reason is taken as transient", AuthorityRules, metav1.ConditionFalse, "SomethingNew", InProgress},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.rules.Of(metav1.Condition{Status: c.status, Reason: c.reason}); got != c.want {
				t.Errorf("Of(%s, %s) = %s, want %s", c.status, c.reason, got, c.want)
			}
		})
	}
}

// Every refusal a ticket can get has a rule: none is left to the default.
func TestTicketRulesCoverEveryRefusal(t *testing.T) {
	for _, r := range []ticket.Reason{ticket.Malformed, ticket.BadSignature, ticket.UnknownIssuer, ticket.BadDelegation,
		ticket.OutOfScope, ticket.WrongAudience, ticket.NotYetValid, ticket.Expired, ticket.InvalidGrant,
		ticket.Replayed, ticket.NotTrusted, ticket.Overcommitted} {
		if _, ok := TicketRules[string(r)]; !ok {
			t.Errorf("TicketRules has no rule for %s", r)
		}
	}
}

func TestSet(t *testing.T) {
	var conds []metav1.Condition
	steps := []struct {
		ready                metav1.Condition
		reconciling, stalled bool
	}{
		{metav1.Condition{Status: metav1.ConditionFalse, Reason: planetv1.ReasonSliversPending, Message: "0 of 3 slivers ready", ObservedGeneration: 1}, true, false},
		{metav1.Condition{Status: metav1.ConditionFalse, Reason: planetv1.ReasonExpired, Message: "the slice expired", ObservedGeneration: 2}, false, true},
		{metav1.Condition{Status: metav1.ConditionTrue, Reason: planetv1.ReasonSliversReady, Message: "3 of 3 slivers ready", ObservedGeneration: 3}, false, false},
	}
	for i, s := range steps {
		Set(&conds, s.ready, SliceRules)
		ready := meta.FindStatusCondition(conds, planetv1.ConditionReady)
		if ready == nil || ready.Reason != s.ready.Reason || ready.ObservedGeneration != s.ready.ObservedGeneration {
			t.Fatalf("step %d: Ready = %+v, want reason %s at generation %d", i, ready, s.ready.Reason, s.ready.ObservedGeneration)
		}
		for _, c := range []struct {
			typ  string
			want bool
		}{{planetv1.ConditionReconciling, s.reconciling}, {planetv1.ConditionStalled, s.stalled}} {
			got := meta.FindStatusCondition(conds, c.typ)
			if (got != nil) != c.want {
				t.Fatalf("step %d: %s present = %v, want %v (%+v)", i, c.typ, got != nil, c.want, conds)
			}
			if got != nil && (got.Status != metav1.ConditionTrue || got.Reason != s.ready.Reason || got.Message != s.ready.Message || got.ObservedGeneration != s.ready.ObservedGeneration) {
				t.Errorf("step %d: %s = %+v, want True with Ready's reason, message and generation", i, c.typ, got)
			}
		}
	}
}

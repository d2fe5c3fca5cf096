package controllers

import (
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/sliverplan"
	"github.com/planetkube/planetkube/internal/ticket"
)

// The pure status logic of the reconcilers, without an API server: what a
// reconcile decided and observed → Ready, and the Reconciling or Stalled
// condition kstatus reads from it. The envtest suite checks the same
// through the controllers; these tables name every case.

// conditionsOf returns the status of each condition type present.
func conditionsOf(conds []metav1.Condition) map[string]string {
	out := map[string]string{}
	for _, c := range conds {
		out[c.Type] = string(c.Status) + "/" + c.Reason
	}
	return out
}

func TestSliceStatus(t *testing.T) {
	expires := time.Date(2026, 12, 19, 0, 0, 0, 0, time.UTC)
	open := gate{ownNamespace: true, runSlivers: true, expiresAt: expires}
	blocked := func(reason string) gate {
		g := open
		g.block(reason, "blocked: "+reason)
		return g
	}
	suspended := blocked(planetv1.ReasonSuspended)
	suspended.suspended = true
	expired := blocked(planetv1.ReasonExpired)
	expired.expired = true
	invalid := open
	invalid.invalidExpiry = "expiresAt is more than 8 weeks ahead"

	for _, tc := range []struct {
		name string
		g    gate
		obs  sliverplan.Plan
		fail *stepError
		// want is Ready, and Reconciling or Stalled when present.
		want map[string]string
	}{
		{"every sliver ready", open, sliverplan.Plan{Desired: 3, Ready: 3, Matching: 3},
			nil, map[string]string{"Ready": "True/SliversReady"}},
		{"slivers on nodes that are not ready do not hold Ready back", open, sliverplan.Plan{Desired: 3, Ready: 2, Matching: 3},
			nil, map[string]string{"Ready": "True/SliversReady"}},
		{"slivers starting", open, sliverplan.Plan{Desired: 3, Ready: 1, Pending: 2, Matching: 3},
			nil, map[string]string{"Ready": "False/SliversPending", "Reconciling": "True/SliversPending"}},
		{"no node matches: stalled until the selection changes", open, sliverplan.Plan{},
			nil, map[string]string{"Ready": "False/NoMatchingNodes", "Stalled": "True/NoMatchingNodes"}},
		{"matching nodes, none ready: clears by itself", open, sliverplan.Plan{Matching: 2},
			nil, map[string]string{"Ready": "False/NoReadyNodes", "Reconciling": "True/NoReadyNodes"}},
		{"suspended is as asked: Ready", suspended, sliverplan.Plan{},
			nil, map[string]string{"Ready": "True/Suspended", "Suspended": "True/Suspended"}},
		{"expired", expired, sliverplan.Plan{},
			nil, map[string]string{"Ready": "False/Expired", "Stalled": "True/Expired", "Expired": "True/Expired"}},
		{"a refused expiry outranks the rest", invalid, sliverplan.Plan{Desired: 1, Ready: 1, Matching: 1},
			nil, map[string]string{"Ready": "False/InvalidExpiry", "Stalled": "True/InvalidExpiry"}},
		{"a disabled site", blocked(planetv1.ReasonSiteDisabled), sliverplan.Plan{},
			nil, map[string]string{"Ready": "False/SiteDisabled", "Stalled": "True/SiteDisabled"}},
		{"a failed step is retried: Reconciling, with its reason", open, sliverplan.Plan{},
			&stepError{reason: planetv1.ReasonNamespaceFailed, err: errors.New("boom")},
			map[string]string{"Ready": "False/NamespaceFailed", "Reconciling": "True/NamespaceFailed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &planetv1.Slice{ObjectMeta: metav1.ObjectMeta{Namespace: "princeton", Name: "codeen", Generation: 4}}
			id := sliceIdentity{authority: "plc", site: "princeton", name: "codeen"}
			(&SliceReconciler{}).setStatus(s, id, tc.g, tc.obs, nil, tc.fail)
			got := conditionsOf(s.Status.Conditions)
			for typ, want := range tc.want {
				if got[typ] != want {
					t.Errorf("%s = %q, want %q (all: %v)", typ, got[typ], want, got)
				}
			}
			for _, typ := range []string{planetv1.ConditionReconciling, planetv1.ConditionStalled} {
				if _, wanted := tc.want[typ]; !wanted && got[typ] != "" {
					t.Errorf("%s = %q, want none", typ, got[typ])
				}
			}
			if c := meta.FindStatusCondition(s.Status.Conditions, planetv1.ConditionReady); c == nil || c.ObservedGeneration != 4 || s.Status.ObservedGeneration != 4 {
				t.Errorf("observedGeneration not 4: %+v, status %d", c, s.Status.ObservedGeneration)
			}
			if s.Status.FullName != "plc.princeton.codeen" {
				t.Errorf("fullName = %q", s.Status.FullName)
			}
		})
	}
}

// TestSliceStatusKeepsCountsOfAFailedStep: a reconcile that failed before
// its slivers leaves the counts it did not observe as they were; one that
// failed while syncing them writes what it saw.
func TestSliceStatusKeepsCountsOfAFailedStep(t *testing.T) {
	g := gate{ownNamespace: true, runSlivers: true, expiresAt: time.Date(2026, 12, 19, 0, 0, 0, 0, time.UTC)}
	id := sliceIdentity{authority: "plc", site: "princeton", name: "codeen"}
	for _, tc := range []struct {
		reason      string
		wantDesired int32
	}{
		{planetv1.ReasonNamespaceFailed, 7},
		{planetv1.ReasonSliversFailed, 2},
	} {
		s := &planetv1.Slice{Status: planetv1.SliceStatus{DesiredSlivers: 7, ReadySlivers: 7}}
		(&SliceReconciler{}).setStatus(s, id, g, sliverplan.Plan{Desired: 2, Ready: 1}, nil, &stepError{reason: tc.reason, err: errors.New("x")})
		if s.Status.DesiredSlivers != tc.wantDesired {
			t.Errorf("%s: desiredSlivers %d, want %d", tc.reason, s.Status.DesiredSlivers, tc.wantDesired)
		}
	}
	// The site could not be read: nothing but Ready is known.
	s := &planetv1.Slice{Status: planetv1.SliceStatus{DesiredSlivers: 7}}
	(&SliceReconciler{}).setStatus(s, id, gate{}, sliverplan.Plan{}, nil, &stepError{reason: planetv1.ReasonSiteLookupFailed, err: errors.New("x")})
	if s.Status.ExpiresAt != nil || s.Status.DesiredSlivers != 7 || conditionsOf(s.Status.Conditions)["Ready"] != "False/SiteLookupFailed" {
		t.Errorf("site lookup failed: %+v", s.Status)
	}
}

func TestTicketStatus(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	claims := &ticket.Claims{Issuer: "ple", Audience: "plc", IssuedAt: now.Add(-time.Hour).Unix(), Expiry: now.Add(time.Hour).Unix(), ID: "j",
		Sliver: &ticket.SliverGrant{Slice: "ple.inria.codeen"}}
	verified := &ticket.Verified{Claims: *claims, KeyID: "k", Hash: "h"}
	withdrawal := &ticket.Verified{Claims: ticket.Claims{Issuer: "ple", Audience: "plc", IssuedAt: claims.IssuedAt, Expiry: claims.Expiry, ID: "w",
		Withdraw: &ticket.WithdrawGrant{Slice: "ple.inria.codeen"}}}
	for _, tc := range []struct {
		name string
		out  *redemption
		want map[string]string
	}{
		{"redeemed", &redemption{claims: claims, verified: verified, redeemed: "Slice/planetkube-auth-ple/inria-codeen"},
			map[string]string{"Ready": "True/Redeemed", "Expired": "False/NotExpired"}},
		{"a withdrawal redeemed", &redemption{claims: &withdrawal.Claims, verified: withdrawal, withdrawn: true},
			map[string]string{"Ready": "True/Withdrawn"}},
		{"revoked: stalled", &redemption{claims: claims, reason: string(ticket.Revoked), message: "withdrawn"},
			map[string]string{"Ready": "False/Revoked", "Stalled": "True/Revoked"}},
		{"not yet valid: clears by itself", &redemption{claims: claims, reason: string(ticket.NotYetValid)},
			map[string]string{"Ready": "False/NotYetValid", "Reconciling": "True/NotYetValid"}},
		{"a failed write is retried", &redemption{claims: claims, reason: planetv1.ReasonRedeemFailed},
			map[string]string{"Ready": "False/RedeemFailed", "Reconciling": "True/RedeemFailed"}},
		{"a namespace that is another's: stalled", &redemption{claims: claims, reason: planetv1.ReasonNamespaceConflict},
			map[string]string{"Ready": "False/NamespaceConflict", "Stalled": "True/NamespaceConflict"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk := &planetv1.Ticket{ObjectMeta: metav1.ObjectMeta{Generation: 1}}
			(&TicketReconciler{Now: func() time.Time { return now }}).setStatus(tk, tc.out)
			got := conditionsOf(tk.Status.Conditions)
			for typ, want := range tc.want {
				if got[typ] != want {
					t.Errorf("%s = %q, want %q (all: %v)", typ, got[typ], want, got)
				}
			}
		})
	}
	// A ticket past its expiry says so, whatever it redeemed.
	tk := &planetv1.Ticket{}
	(&TicketReconciler{Now: func() time.Time { return now.Add(2 * time.Hour) }}).setStatus(tk, &redemption{claims: claims, verified: verified})
	if got := conditionsOf(tk.Status.Conditions); got["Ready"] != "False/Expired" || got["Expired"] != "True/Expired" {
		t.Errorf("expired ticket: %v", got)
	}
	// A token that names a time no status can hold (unverified) leaves
	// expiresAt unset rather than failing every status write.
	far := *claims
	far.Expiry = ticket.MaxUnixTime + 1
	tk = &planetv1.Ticket{}
	(&TicketReconciler{Now: func() time.Time { return now }}).setStatus(tk, &redemption{claims: &far, reason: string(ticket.Malformed)})
	if tk.Status.ExpiresAt != nil {
		t.Errorf("expiresAt %v from an expiry past year 9999", tk.Status.ExpiresAt)
	}
}

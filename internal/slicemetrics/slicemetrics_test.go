package slicemetrics

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/testing/testenv"
)

var now = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// TestExpirySeconds reads real Slices from an API server: one series per
// slice whose status has an expiry, seconds left at the collector's now,
// negative past the expiry; none for a slice without one yet or one being
// deleted.
func TestExpirySeconds(t *testing.T) {
	env := testenv.Start(t, filepath.Join("..", ".."))
	ctx := t.Context()
	c := env.Client
	for _, ns := range []string{"princeton", "mit"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	slice := func(ns, name string, expiresAt *time.Time, finalizer bool) {
		t.Helper()
		s := &planetv1.Slice{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       planetv1.SliceSpec{Template: planetv1.SliverTemplate{Image: "registry.k8s.io/pause:3.10"}},
		}
		if finalizer {
			s.Finalizers = []string{planetv1.SliceFinalizer}
		}
		if err := c.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		if expiresAt != nil {
			s.Status.ExpiresAt = &metav1.Time{Time: *expiresAt}
			if err := c.Status().Update(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
	}
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	slice("princeton", "codeen", at(14*24*time.Hour), false)
	slice("princeton", "lastday", at(90*time.Minute), false)
	slice("mit", "chord", at(-time.Hour), false)
	slice("mit", "fresh", nil, false)
	slice("mit", "going", at(time.Hour), true)
	going := &planetv1.Slice{ObjectMeta: metav1.ObjectMeta{Namespace: "mit", Name: "going"}}
	if err := c.Delete(ctx, going); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Patch(context.Background(), going, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`)))
	})

	col := &Collector{Reader: c, Now: func() time.Time { return now }}
	want := `# HELP planetkube_slice_expiry_seconds Seconds until the slice's expiry in force (status.expiresAt); negative once it has expired. A slice whose status has no expiry yet, or that is being deleted, has no series.
# TYPE planetkube_slice_expiry_seconds gauge
planetkube_slice_expiry_seconds{namespace="mit",slice="chord"} -3600
planetkube_slice_expiry_seconds{namespace="princeton",slice="codeen"} 1.2096e+06
planetkube_slice_expiry_seconds{namespace="princeton",slice="lastday"} 5400
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(want), ExpiryName); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.CollectAndLint(col, ExpiryName); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}
}

// failingReader fails every list, as a cache that is not started does.
type failingReader struct{ client.Reader }

func (failingReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("the cache is not started")
}

// TestListFailureKeepsTheScrape: a list that fails yields no series, and
// the registry's other metrics are still gathered without an error.
func TestListFailureKeepsTheScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	other := prometheus.NewGauge(prometheus.GaugeOpts{Name: "other", Help: "another metric"})
	reg.MustRegister(other)
	if err := Register(reg, &Collector{Reader: failingReader{}, Log: logr.Discard()}); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	if len(families) != 1 || families[0].GetName() != "other" {
		t.Fatalf("families %v, want only other", families)
	}
}

// staticReader lists one slice, whatever is asked.
type staticReader struct {
	client.Reader
	expiresAt time.Time
}

func (r staticReader) List(_ context.Context, l client.ObjectList, _ ...client.ListOption) error {
	sl, ok := l.(*planetv1.SliceList)
	if !ok {
		return nil // no tickets, no authorities
	}
	sl.Items = []planetv1.Slice{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "princeton", Name: "codeen"},
		Status:     planetv1.SliceStatus{ExpiresAt: &metav1.Time{Time: r.expiresAt}},
	}}
	return nil
}

// TestRegisterReplaces: registering again (a restarted manager) replaces
// the previous collector instead of failing.
func TestRegisterReplaces(t *testing.T) {
	reg := prometheus.NewRegistry()
	fixed := func() time.Time { return now }
	if err := Register(reg, &Collector{Reader: staticReader{expiresAt: now.Add(time.Hour)}, Now: fixed}); err != nil {
		t.Fatal(err)
	}
	if err := Register(reg, &Collector{Reader: staticReader{expiresAt: now.Add(2 * time.Hour)}, Now: fixed}); err != nil {
		t.Fatalf("registering again: %v", err)
	}
	want := `# HELP planetkube_slice_expiry_seconds Seconds until the slice's expiry in force (status.expiresAt); negative once it has expired. A slice whose status has no expiry yet, or that is being deleted, has no series.
# TYPE planetkube_slice_expiry_seconds gauge
planetkube_slice_expiry_seconds{namespace="princeton",slice="codeen"} 7200
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), ExpiryName); err != nil {
		t.Fatal(err)
	}
}

// TestStatusMetrics reads a real Slice's status: its slivers, its Ready
// condition with the reason, and its placement summary's reasons.
func TestStatusMetrics(t *testing.T) {
	env := testenv.Start(t, filepath.Join("..", ".."))
	ctx := t.Context()
	c := env.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "princeton"}}); err != nil {
		t.Fatal(err)
	}
	s := &planetv1.Slice{ObjectMeta: metav1.ObjectMeta{Namespace: "princeton", Name: "codeen"},
		Spec: planetv1.SliceSpec{Template: planetv1.SliverTemplate{Image: "pause"}}}
	if err := c.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	s.Status = planetv1.SliceStatus{DesiredSlivers: 9, ReadySlivers: 7,
		Conditions: []metav1.Condition{{Type: planetv1.ConditionReady, Status: metav1.ConditionFalse, Reason: planetv1.ReasonSliversPending, Message: "7 of 9", LastTransitionTime: metav1.Now()}},
		Placement: &planetv1.PlacementSummary{Selected: 12, Running: 7, NotRunning: 5, Groups: []planetv1.NodeGroup{
			{Reason: planetv1.ReasonNotTrusted, Count: 3}, {Reason: "ContainerCreating", Count: 2}}},
	}
	if err := c.Status().Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	col := &Collector{Reader: c, Now: func() time.Time { return now }}
	want := `# HELP planetkube_slice_nodes_not_running The nodes a slice's selection names that run no ready sliver of it, by reason (status.placement: NotTrusted, NodeFull, MaxNodes ...).
# TYPE planetkube_slice_nodes_not_running gauge
planetkube_slice_nodes_not_running{namespace="princeton",reason="ContainerCreating",slice="codeen"} 2
planetkube_slice_nodes_not_running{namespace="princeton",reason="NotTrusted",slice="codeen"} 3
# HELP planetkube_slice_ready 1 when a slice's Ready condition is True, else 0; reason is the condition's (SliversReady, Suspended, Expired, SiteSliceLimit ...).
# TYPE planetkube_slice_ready gauge
planetkube_slice_ready{namespace="princeton",reason="SliversPending",slice="codeen"} 0
# HELP planetkube_slice_slivers A slice's slivers at this install, by state: desired (the nodes it runs on) and ready.
# TYPE planetkube_slice_slivers gauge
planetkube_slice_slivers{namespace="princeton",slice="codeen",state="desired"} 9
planetkube_slice_slivers{namespace="princeton",slice="codeen",state="ready"} 7
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(want), "planetkube_slice_slivers", "planetkube_slice_ready", "planetkube_slice_nodes_not_running"); err != nil {
		t.Fatal(err)
	}

	// Federation: tickets by reason, a peer's feed and push health.
	for i, reason := range []string{planetv1.ReasonRedeemed, planetv1.ReasonRedeemed, "NotTrusted", ""} {
		tk := &planetv1.Ticket{ObjectMeta: metav1.ObjectMeta{Namespace: "princeton", Name: "t" + string(rune('a'+i))},
			Spec: planetv1.TicketSpec{Token: "aaaaaaaa.bbbbbbbb.cccccccc"}}
		if err := c.Create(ctx, tk); err != nil {
			t.Fatal(err)
		}
		if reason == "" {
			continue // not looked at yet
		}
		tk.Status.Conditions = []metav1.Condition{{Type: planetv1.ConditionReady, Status: metav1.ConditionTrue, Reason: reason, Message: "x", LastTransitionTime: metav1.Now()}}
		if err := c.Status().Update(ctx, tk); err != nil {
			t.Fatal(err)
		}
	}
	a := &planetv1.Authority{ObjectMeta: metav1.ObjectMeta{Name: "ple"},
		Spec: planetv1.AuthoritySpec{Keys: []planetv1.AuthorityKey{{ID: "k1", PublicKey: "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="}}}}
	if err := c.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	a.Status.Conditions = []metav1.Condition{
		{Type: planetv1.ConditionFeedSynced, Status: metav1.ConditionFalse, Reason: planetv1.ReasonFeedUnreachable, Message: "x", LastTransitionTime: metav1.Now()},
		{Type: planetv1.ConditionPushReady, Status: metav1.ConditionTrue, Reason: planetv1.ReasonPeerReachable, Message: "x", LastTransitionTime: metav1.Now()},
	}
	if err := c.Status().Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	want = `# HELP planetkube_authority_feed_synced 1 when a peer authority's feed was read and applied at the last poll, else 0 (reason: FeedUnreachable, NotTrusted ...). Peers that are not polled have no series.
# TYPE planetkube_authority_feed_synced gauge
planetkube_authority_feed_synced{authority="ple",reason="FeedUnreachable"} 0
# HELP planetkube_authority_push_ready 1 when a peer authority's cluster is reachable with its push kubeconfig, else 0. Peers not pushed to have no series.
# TYPE planetkube_authority_push_ready gauge
planetkube_authority_push_ready{authority="ple",reason="PeerReachable"} 1
# HELP planetkube_tickets The Tickets applied here, by their Ready condition's reason (Redeemed, Superseded, Withdrawn, or why refused: NotTrusted, Expired, Replayed ...; Pending before the controller looked).
# TYPE planetkube_tickets gauge
planetkube_tickets{reason="NotTrusted"} 1
planetkube_tickets{reason="Pending"} 1
planetkube_tickets{reason="Redeemed"} 2
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(want), "planetkube_tickets", "planetkube_authority_feed_synced", "planetkube_authority_push_ready"); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.CollectAndLint(col); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}
}

package bandwidth

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/agent/bandwidth/budget"
	"github.com/planetkube/planetkube/internal/testing/netnstest"
	"github.com/planetkube/planetkube/internal/testing/testenv"
)

// startLoop runs a loop until the returned stop is called (or t ends).
func startLoop(t *testing.T, l *Loop) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = l.Start(ctx)
	}()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// eventually polls cond every 50 ms until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("Timed out after %v waiting for %s", timeout, what)
	}
}

// TestBudgetHoldsASliceToTheFormulasCeil runs the loop on a shaped uplink
// with a compressed period (40 s) and a small budget: a slice sending at
// full speed passes the threshold, is held to (budget − used) × 8 / (seconds
// left) — measured on the wire — and its Slice gets a BandwidthCapped event
// naming the node; another slice keeps the cap. The agent restarts (new
// tree, counters from zero, the ledger read back from its file): the
// period's usage is still there and the slice stays held.
func TestBudgetHoldsASliceToTheFormulasCeil(t *testing.T) {
	netnstest.RequireRoot(t)
	env := testenv.Start(t, "../../..")
	k8s := env.Client
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "princeton"}}); err != nil {
		t.Fatal(err)
	}
	refs := map[string]*planetv1.Slice{}
	for _, name := range []string{"hog", "calm"} {
		slice := &planetv1.Slice{ObjectMeta: metav1.ObjectMeta{Namespace: "princeton", Name: name},
			Spec: planetv1.SliceSpec{Template: planetv1.SliverTemplate{Image: "busybox"}}}
		if err := k8s.Create(ctx, slice); err != nil {
			t.Fatal(err)
		}
		refs[name] = slice
	}
	recorder := env.Recorder(t, ctx, "planetkube-node-agent")

	topo, shaper := newShaped(t, 2, Config{MinRate: 1000})
	const hog, calm = "plc.princeton.hog", "plc.princeton.calm"
	slivers := func() []Sliver {
		return []Sliver{
			{Slice: hog, Share: 1, Addrs: podClass(topo, 0, hog, 1).Addrs, Ref: refs["hog"]},
			{Slice: calm, Share: 1, Addrs: podClass(topo, 1, calm, 1).Addrs, Ref: refs["calm"]},
		}
	}
	policy := budget.Config{Budget: 8_000_000, ExemptBudget: 8_000_000, Threshold: 0.5, Period: 40 * time.Second, MinRate: 1000, MaxRate: uplinkCap}
	ledgerPath := filepath.Join(t.TempDir(), "bandwidth.json")
	newLoop := func(sh *Shaper, ledger *budget.Ledger) *Loop {
		return &Loop{Shaper: sh, Ledger: ledger, LedgerPath: ledgerPath, Policy: policy, Slivers: slivers, Node: "n1",
			Recorder: recorder, Metrics: NewMetrics(), Interval: 200 * time.Millisecond}
	}
	loop := newLoop(shaper, &budget.Ledger{})
	stop := startLoop(t, loop)
	servers := topo.Stream(t, 0)

	eventually(t, 30*time.Second, "the hog to be capped", func() bool {
		d, ok := loop.Decision(hog)
		return ok && d.Capped
	})
	// Measure on the wire (the class's counter) and at the receiver while
	// the ceil holds; spending at the ceil keeps it where it is.
	d0, _ := loop.Decision(hog)
	c0, err := shaper.Counters()
	if err != nil {
		t.Fatal(err)
	}
	got, took := netnstest.Received(t, servers, int64(d0.Ceil/8*3)) // about 3 s at the ceil
	c1, err := shaper.Counters()
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := loop.Decision(hog)
	ceil := float64(d0.Ceil+d1.Ceil) / 2
	wire := float64(c1[hog].Bytes-c0[hog].Bytes) * 8 / took.Seconds()
	goodput := float64(got[0]) * 8 / took.Seconds()
	t.Logf("Held: ceil %d → %d bit/s; on the wire %.0f bit/s (%.3f of the ceil), goodput %.0f bit/s over %v", d0.Ceil, d1.Ceil, wire, wire/ceil, goodput, took)
	if wire < ceil*0.9 || wire > ceil*1.1 {
		t.Errorf("Wire rate %.0f bit/s, want the ceil %.0f bit/s within 10 %%", wire, ceil)
	}
	u, _ := loop.Ledger.Usage(hog)
	if left := policy.Period - time.Since(u.PeriodStart); left > 0 {
		formula := float64(policy.Budget-u.Bytes) * 8 / left.Seconds()
		if d1.Ceil < uint64(formula*0.8) || d1.Ceil > uint64(formula*1.25) {
			t.Errorf("Ceil %d bit/s, want about (budget − used) × 8 / seconds left = %.0f", d1.Ceil, formula)
		}
	}
	if d, _ := loop.Decision(calm); d.Capped || d.Ceil != uplinkCap {
		t.Errorf("The calm slice's decision %+v, want the cap and not capped", d)
	}

	// The hog's Slice is told once, with the node named.
	var notes []string
	eventually(t, 30*time.Second, "a BandwidthCapped event on Slice princeton/hog", func() bool {
		list := &eventsv1.EventList{}
		if err := k8s.List(ctx, list, client.InNamespace("princeton")); err != nil {
			return false
		}
		notes = notes[:0]
		for _, e := range list.Items {
			if e.Reason == ReasonBandwidthCapped {
				notes = append(notes, e.Regarding.Name+": "+e.Note)
			}
		}
		return len(notes) > 0
	})
	if len(notes) != 1 || !strings.HasPrefix(notes[0], "hog: ") || !strings.Contains(notes[0], "node n1") {
		t.Errorf("BandwidthCapped events %q, want one on hog naming node n1", notes)
	}

	// Restart: the loop stops, a new shaper rebuilds the tree (counters
	// from zero) and the ledger is read back.
	stop()
	shaper.Close()
	before, _ := loop.Ledger.Usage(hog)
	shaper2, err := New(shaper.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(shaper2.Close)
	if c, _ := shaper2.Counters(); c[hog].Bytes != 0 {
		t.Fatalf("The new tree's hog counter is %d, want a new class", c[hog].Bytes)
	}
	ledger, err := budget.Load(ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	loop2 := newLoop(shaper2, ledger)
	startLoop(t, loop2)
	eventually(t, 10*time.Second, "the hog capped again after the restart", func() bool {
		d, ok := loop2.Decision(hog)
		u, _ := ledger.Usage(hog)
		return ok && d.Capped && u.Bytes > before.Bytes
	})
	after, _ := ledger.Usage(hog)
	if !after.PeriodStart.Equal(before.PeriodStart) || !after.Notified {
		t.Errorf("After the restart the period %v (notified %v), want the same period %v, already notified", after.PeriodStart, after.Notified, before.PeriodStart)
	}
	t.Logf("Usage before the restart %d bytes, after %d", before.Bytes, after.Bytes)
}

// TestClassifiesBySliverAddressAndDestination checks the maps and rules:
// a sliver's IPv4 and IPv6 traffic counts in its slice's class, traffic to
// an exempt destination in its exempt class, and a pod that is no sliver
// in neither. A slice removed and added again gets a new class.
func TestClassifiesBySliverAddressAndDestination(t *testing.T) {
	exempt := netnstest.InternetIPv6
	topo, shaper := newShaped(t, 2, Config{MinRate: 1000, Exempt: []netip.Prefix{netip.PrefixFrom(exempt, 128)}})
	if name, err := DefaultUplink(topo.Pods[0].Path); err != nil || name != "eth0" {
		t.Errorf("A pod's default uplink is %q, %v; want eth0", name, err)
	}
	const slice = "plc.princeton.codeen"
	if _, err := shaper.Apply([]Class{podClass(topo, 0, slice, 1)}); err != nil {
		t.Fatal(err)
	}
	srv := netnstest.StartTCPServer(t, topo.Internet)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	send := func(pod int, dst netip.Addr, n int) {
		t.Helper()
		if _, err := topo.Pods[pod].SendTCP(ctx, netip.AddrPortFrom(dst, srv.Port()), n); err != nil {
			t.Fatal(err)
		}
	}
	const mb = 1_000_000
	send(0, topo.Internet.IPv4, mb)   // budget class, IPv4
	send(0, topo.Internet.IPv6, 2*mb) // exempt class, IPv6
	send(1, topo.Internet.IPv4, 4*mb) // not a sliver: the default class
	c, err := shaper.Counters()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Counters %+v", c[slice])
	if b := c[slice].Bytes; b < mb || b > mb*11/10 {
		t.Errorf("Budget class counted %d bytes, want the 1 MB sent to %s plus headers", b, topo.Internet.IPv4)
	}
	if b := c[slice].ExemptBytes; b < 2*mb || b > 2*mb*11/10 {
		t.Errorf("Exempt class counted %d bytes, want the 2 MB sent to %s plus headers", b, exempt)
	}

	removed, err := shaper.Apply(nil)
	if err != nil || len(removed) != 1 || removed[0] != slice {
		t.Fatalf("Apply(nil) removed %v, %v; want %s", removed, err, slice)
	}
	if c, _ := shaper.Counters(); len(c) != 0 {
		t.Errorf("Counters after removal %v, want none", c)
	}
	if _, err := shaper.Apply([]Class{podClass(topo, 0, slice, 1)}); err != nil {
		t.Fatal(err)
	}
	if c, _ := shaper.Counters(); c[slice] != (Counters{}) {
		t.Errorf("The re-added slice's counters %+v, want a new class from zero", c[slice])
	}
}

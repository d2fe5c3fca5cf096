package clusterview

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
)

func mkNode(name, site string, ready bool) *corev1.Node {
	status := corev1.ConditionTrue
	if !ready {
		status = corev1.ConditionFalse
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{planetv1.LabelSite: site}},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi"),
				corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"), corev1.ResourcePods: resource.MustParse("3"),
			},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}},
		},
	}
}

func pod(ns, name, node, cpu, mem string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
		}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

func sliverLabels(site, slice string) map[string]string {
	return map[string]string{planetv1.LabelManagedBy: planetv1.ManagedByValue, planetv1.LabelSite: site, planetv1.LabelSlice: slice}
}

func names(v *View, sites, nodes []string) []string {
	var out []string
	for _, n := range v.Candidates(sites, nodes) {
		out = append(out, n.Name)
	}
	slices.Sort(out)
	return out
}

func TestCandidatesAndNodeChanges(t *testing.T) {
	v := New(nil)
	var changes []Change
	v.Subscribe(func(c Change) { changes = append(changes, c) })
	v.SetNode(mkNode("a1", "a", true))
	v.SetNode(mkNode("a2", "a", true))
	v.SetNode(mkNode("b1", "b", false))
	v.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "plain"}}) // no site: not PlanetKube's
	if got := names(v, nil, nil); !slices.Equal(got, []string{"a1", "a2", "b1"}) {
		t.Errorf("all = %v", got)
	}
	if got := names(v, []string{"b"}, nil); !slices.Equal(got, []string{"b1"}) {
		t.Errorf("site b = %v", got)
	}
	if got := names(v, []string{"a"}, []string{"b1", "zz"}); !slices.Equal(got, []string{"b1"}) {
		t.Errorf("names win over sites (placement filters both) = %v", got)
	}
	if len(changes) != 3 {
		t.Fatalf("changes = %d, want 3 (the plain node is none)", len(changes))
	}
	v.SetNode(mkNode("a1", "a", true)) // a heartbeat: nothing changed
	if len(changes) != 3 {
		t.Errorf("an unchanged node was published")
	}
	v.SetNode(mkNode("b1", "a", true)) // moved to site a and ready
	c := changes[len(changes)-1].Node
	if c == nil || c.Old.Site != "b" || c.New.Site != "a" || !c.New.Ready {
		t.Errorf("move: %+v", c)
	}
	if got := names(v, []string{"b"}, nil); len(got) != 0 {
		t.Errorf("site b after the move = %v", got)
	}
	v.DeleteNode("a2")
	if c := changes[len(changes)-1].Node; c.New != nil || c.Old.Name != "a2" {
		t.Errorf("delete: %+v", c)
	}
	if _, ok := v.Allocatable("a2"); ok {
		t.Error("a deleted node is still known")
	}
}

func TestFree(t *testing.T) {
	v := New(nil)
	v.SetNode(mkNode("n1", "a", true))
	v.SetPod(pod("kube-system", "ds", "n1", "500m", "1Gi", nil))
	v.SetPod(pod("a-s", "s-n1", "n1", "1", "2Gi", sliverLabels("a", "s")))
	v.SetPod(pod("a-t", "t-n1", "n1", "250m", "1Gi", sliverLabels("a", "t")))
	done := pod("default", "done", "n1", "2", "8Gi", nil)
	done.Status.Phase = corev1.PodSucceeded
	v.SetPod(done)
	v.SetPod(pod("default", "elsewhere", "n2", "2", "8Gi", nil))

	f, ok := v.Free("n1", "a/s", "")
	if !ok {
		t.Fatal("n1 unknown")
	}
	// 4 - 500m (DaemonSet) - 250m (slice t); slice s's own sliver is left out.
	if q := f.Resources[corev1.ResourceCPU]; q.String() != "3250m" {
		t.Errorf("free cpu = %s, want 3250m", q.String())
	}
	if q := f.Resources[corev1.ResourceMemory]; q.String() != "14Gi" {
		t.Errorf("free memory = %s, want 14Gi", q.String())
	}
	if f.Pods != 1 {
		t.Errorf("free pods = %d, want 1 (3 allocatable, 2 others)", f.Pods)
	}

	// An assumed sliver of another slice counts until seen, and Forget
	// drops it.
	u := pod("a-u", "u-n1", "n1", "3", "1Gi", sliverLabels("a", "u"))
	v.Assume(u)
	if f, _ := v.Free("n1", "a/s", ""); f.Pods != 0 || f.Resources.Cpu().String() != "250m" {
		t.Errorf("with an assumed sliver: pods %d, cpu %s", f.Pods, f.Resources.Cpu().String())
	}
	v.Forget(u)
	v.DeletePod("kube-system/ds")
	if f, _ := v.Free("n1", "a/s", ""); f.Pods != 2 || f.Resources.Cpu().String() != "3750m" {
		t.Errorf("after Forget and a delete: pods %d, cpu %s", f.Pods, f.Resources.Cpu().String())
	}
	// A pod that finishes frees its room.
	t2 := pod("a-t", "t-n1", "n1", "250m", "1Gi", sliverLabels("a", "t"))
	t2.Status.Phase = corev1.PodFailed
	v.SetPod(t2)
	if f, _ := v.Free("n1", "a/s", ""); f.Resources.Cpu().String() != "4" {
		t.Errorf("after the pod failed: cpu %s", f.Resources.Cpu().String())
	}
	// Never below zero.
	v.SetPod(pod("default", "hog", "n1", "64", "1Ti", nil))
	if f, _ := v.Free("n1", "a/s", ""); f.Resources.Cpu().Sign() != 0 || f.Resources.Memory().Sign() != 0 {
		t.Errorf("overfull node: %v", f.Resources)
	}
}

func pool(name string, names []string, cpu string, bindTo string, until time.Time) *planetv1.ResourcePool {
	p := &planetv1.ResourcePool{
		ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: name, Generation: 1},
		Spec: planetv1.ResourcePoolSpec{
			Nodes:   &planetv1.NodeSelection{Names: names},
			PerNode: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)},
		},
	}
	if bindTo != "" {
		p.Spec.Binding = &planetv1.PoolBinding{Slice: bindTo, Until: metav1.Time{Time: until}}
	}
	return p
}

func TestAccountingFollowsPoolsNodesAndTime(t *testing.T) {
	var mu sync.Mutex
	clock := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	v := New(now)
	synced := false
	v.AddFeed(func() bool { mu.Lock(); defer mu.Unlock(); return synced })
	changes := make(chan Change, 100)
	v.Subscribe(func(c Change) {
		if c.Node == nil {
			changes <- c
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = v.Start(ctx) }()

	v.SetNode(mkNode("n1", "a", true))
	v.SetNode(mkNode("n2", "a", true))
	v.SetPool(pool("r", []string{"n1", "n2"}, "1", "a/s", clock.Add(time.Hour)))
	if v.Synced() {
		t.Fatal("synced before the feeds")
	}
	mu.Lock()
	synced = true
	mu.Unlock()
	c := next(t, changes)
	if !c.Accounting || !slices.Equal(c.BoundSlices, []string{"a/s"}) || !v.Synced() {
		t.Fatalf("first accounting: %+v, synced %v", c, v.Synced())
	}
	if r := v.Reservations("a/s"); len(r.Bound) != 2 || r.Reserved["n1"][corev1.ResourceCPU] != resource.MustParse("1") || !r.NextChange.Equal(clock.Add(time.Hour)) {
		t.Errorf("reservations: %+v", r)
	}
	// A status write (same generation) changes nothing.
	v.SetPool(pool("r", []string{"n1", "n2"}, "1", "a/s", clock.Add(time.Hour)))
	// A node that goes: the slice loses it, and only it.
	v.DeleteNode("n2")
	c = next(t, changes)
	if !slices.Equal(c.BoundSlices, []string{"a/s"}) {
		t.Errorf("after the node went: %+v", c)
	}
	if r := v.Reservations("a/s"); len(r.Bound) != 1 || r.Bound["n1"] == nil {
		t.Errorf("bound after the node went: %v", r.Bound)
	}
	// The binding ends with time: the view wakes by itself.
	mu.Lock()
	clock = clock.Add(time.Hour)
	mu.Unlock()
	v.SetPod(pod("x", "y", "n1", "1", "1", nil)) // (pods do not wake it; time does)
	c = next(t, changes)
	if !slices.Equal(c.BoundSlices, []string{"a/s"}) || len(v.Reservations("a/s").Bound) != 0 {
		t.Errorf("after the binding ended: %+v, bound %v", c, v.Reservations("a/s").Bound)
	}
	res := v.Accounting()
	if !res.Pools["a/r"].BindingExpired {
		t.Errorf("pool result: %+v", res.Pools["a/r"])
	}
}

func next(t *testing.T, ch chan Change) Change {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no accounting within 10 s")
		return Change{}
	}
}

func TestStripPodKeepsWhatTheViewReads(t *testing.T) {
	p := pod("a-s", "s-n1", "n1", "1", "2Gi", sliverLabels("a", "s"))
	p.Annotations = map[string]string{AnnotationReservedHash: "abc", "other": "x"}
	p.Spec.Containers[0].Image = "big"
	p.Spec.InitContainers = []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3")}}}}
	got, _ := StripPod(p)
	s := got.(*corev1.Pod)
	if s.Spec.Containers[0].Image != "" || s.Annotations["other"] != "" {
		t.Error("kept what the view does not read")
	}
	before, after := useOf(p), useOf(s)
	if *before != *after || after.cpuMilli != 3000 || after.slice != "a/s" || !after.reserved {
		t.Errorf("use before %+v, after %+v", before, after)
	}
}

// TestFreeWithinAllocation checks the room of a sliver on an authority
// allocation (its part, less the allocation's other slivers) against that
// of a fair-share sliver (the node less every root pool, the allocation's
// slots held), and what the site's status reads of it.
func TestFreeWithinAllocation(t *testing.T) {
	v := New(nil)
	v.SetNode(mkNode("n1", "a", true))
	v.SetNode(mkNode("n2", "a", true))
	ple := pool("ple", []string{"n1"}, "2", "", time.Time{})
	ple.Spec.PerNode[planetv1.ResourceSlivers] = resource.MustParse("2")
	ple.Spec.Binding = &planetv1.PoolBinding{Authority: "ple"}
	var changes []Change
	v.Subscribe(func(c Change) { changes = append(changes, c) })
	v.SetPool(ple)
	v.recompute()
	if len(changes) != 1 || !slices.Equal(changes[0].Allocations, []string{"ple"}) {
		t.Errorf("changes = %+v, want one naming the allocations of ple", changes)
	}

	parts := v.Parts("ple.x")
	amounts := parts["n1"].Amounts
	if len(parts) != 1 || parts["n1"].Allocation != "ple" || amounts.Cpu().String() != "2" {
		t.Errorf("a delegate's parts = %v, want ple's on n1", parts)
	}
	if parts := v.Parts("plc"); parts != nil {
		t.Errorf("another authority's parts = %v, want none", parts)
	}

	onPart := pod("planetkube-ple--a-x", "x-n1", "n1", "500m", "1Gi", sliverLabels("planetkube-auth-ple", "a-x"))
	onPart.Annotations = map[string]string{AnnotationReservedHash: "h", AnnotationAllocation: "ple"}
	v.SetPod(onPart)
	v.SetPod(pod("a-s", "s-n1", "n1", "1", "2Gi", sliverLabels("a", "s")))

	f, _ := v.Free("n1", "planetkube-auth-ple/a-y", "ple")
	if f.Resources.Cpu().String() != "1500m" || f.AllocationSlots != 1 || f.Pods != 1 {
		t.Errorf("on the allocation: cpu %s, slots %d, pods %d; want 1500m, 1, 1", f.Resources.Cpu(), f.AllocationSlots, f.Pods)
	}
	// Memory, which the allocation does not list, is the node's shared
	// room: 16Gi - 2Gi (slice s) - 1Gi (ple's sliver, whose memory is not
	// on the allocation).
	if q := f.Resources[corev1.ResourceMemory]; q.String() != "13Gi" {
		t.Errorf("memory, which the allocation does not list, = %s, want the node's 13Gi", q.String())
	}
	f, _ = v.Free("n1", "a/t", "")
	// 4 cpu - 2 reserved - 1 (slice s); ple's sliver lives on its part.
	if f.Resources.Cpu().String() != "1" || f.Pods != 1 || f.Held != 1 || f.AllocationSlots != NoPodLimit {
		t.Errorf("fair share: cpu %s, pods %d, held %d, slots %d; want 1, 1, 1, none", f.Resources.Cpu(), f.Pods, f.Held, f.AllocationSlots)
	}

	got := v.Allocations("a")
	u, ok := got["ple"]
	if len(got) != 1 || !ok || u.Nodes != 1 || u.Allocated.Cpu().String() != "2" || u.Used.Cpu().String() != "500m" {
		t.Fatalf("allocations of site a = %+v", got)
	}
	if q := u.Used[planetv1.ResourceSlivers]; q.Value() != 1 {
		t.Errorf("slivers used = %s, want 1", q.String())
	}
	if got := v.Allocations("b"); len(got) != 0 {
		t.Errorf("allocations of site b = %+v, want none", got)
	}

	// A sub-pool of the allocation bound to one of ple's slices: what it
	// gives is out of the part (Allocated is what sub-pools leave), and
	// that slice's sliver is not counted against the part a second time.
	one := pool("ple-one", nil, "500m", "planetkube-auth-ple/a-z", time.Now().Add(time.Hour))
	one.Spec.Parent, one.Spec.Nodes = "ple", nil
	one.Spec.PerNode[planetv1.ResourceSlivers] = resource.MustParse("1")
	v.SetPool(one)
	v.recompute()
	onSub := pod("planetkube-ple--a-z", "z-n1", "n1", "500m", "1Gi", sliverLabels("planetkube-auth-ple", "a-z"))
	onSub.Annotations = map[string]string{AnnotationReservedHash: "h2", AnnotationAllocation: "ple"}
	v.SetPod(onSub)
	f, _ = v.Free("n1", "planetkube-auth-ple/a-y", "ple")
	if f.Resources.Cpu().String() != "1" || f.AllocationSlots != 0 {
		t.Errorf("beside a sub-pool: cpu %s, slots %d; want 1 (2 - 500m sub-pool - 500m sliver x), 0 (2 - 1 sub-pool - 1 sliver x)", f.Resources.Cpu(), f.AllocationSlots)
	}
	u = v.Allocations("a")["ple"]
	if u.Used.Cpu().String() != "500m" || u.Used.Name(planetv1.ResourceSlivers, resource.DecimalSI).Value() != 1 {
		t.Errorf("used beside a sub-pool = %v, want the 500m and 1 sliver of x alone", u.Used)
	}
	p1 := v.Parts("ple")["n1"]
	if p1.Size.Cpu().String() != "2" || p1.Amounts.Cpu().String() != "1500m" {
		t.Errorf("part on n1 = %+v, want a size of 2 cpu, 1500m left by the sub-pool", p1)
	}
}

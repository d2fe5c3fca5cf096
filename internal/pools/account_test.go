package pools

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// rl builds a ResourceList from name, amount pairs.
func rl(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

// mk builds a pool created minute minutes after t0.
func mk(key, parent string, minute int, nodes []string, perNode corev1.ResourceList) Pool {
	return Pool{Key: key, Parent: parent, Created: t0.Add(time.Duration(minute) * time.Minute), Nodes: nodes, PerNode: perNode}
}

func bound(p Pool, slice string, until time.Time) Pool {
	p.Binding = &Binding{Slice: slice, Until: until}
	return p
}

// allocated allocates p to an authority until until (zero: no end).
func allocated(p Pool, authority string, until time.Time) Pool {
	p.Binding = &Binding{Authority: authority, Until: until}
	return p
}

func ns(names ...string) []string { return names }

func acct(allocated, free corev1.ResourceList) NodeAccount {
	return NodeAccount{Allocated: allocated, Free: free}
}

// testCapacity gives nodes n1..n3 the same capacity.
var testCapacity = Capacity{
	"n1": rl("cpu", "4", "memory", "8Gi", "planetkube.io/slivers", "10"),
	"n2": rl("cpu", "4", "memory", "8Gi", "planetkube.io/slivers", "10"),
	"n3": rl("cpu", "4", "memory", "8Gi", "planetkube.io/slivers", "10"),
}

func TestAccount(t *testing.T) {
	now := t0.Add(24 * time.Hour)
	inHour, inTwo := now.Add(time.Hour), now.Add(2*time.Hour)
	tests := []struct {
		name  string
		pools []Pool
		// invalid and over: the exact Invalid and Overcommitted of the pools
		// named; every other pool must have neither.
		invalid, over map[string]string
		// lost: the exact Lost of the pools named; every other pool holds
		// all its nodes (or is Invalid).
		lost       map[string]map[string]string
		nodes      map[string]map[string]NodeAccount // exact, for the pools named
		bound      map[string]map[string]corev1.ResourceList
		allocated  map[string]map[string]corev1.ResourceList // exact Result.Allocated
		nextChange time.Time
		active     []string // pools with BindingActive
		expired    []string // pools with BindingExpired
	}{{
		name:  "root within capacity",
		pools: []Pool{mk("s/r", "", 0, ns("n1", "n2"), rl("cpu", "2", "memory", "4Gi"))},
		nodes: map[string]map[string]NodeAccount{"s/r": {
			"n1": acct(rl("cpu", "0", "memory", "0"), rl("cpu", "2", "memory", "4Gi")),
			"n2": acct(rl("cpu", "0", "memory", "0"), rl("cpu", "2", "memory", "4Gi")),
		}},
	}, {
		name: "second root overflows one node: the later loses that node only",
		pools: []Pool{
			mk("s/a", "", 0, ns("n1", "n2"), rl("cpu", "3")),
			bound(mk("s/b", "", 1, ns("n2", "n3"), rl("cpu", "2")), "s/x", inHour),
		},
		over: map[string]string{"s/b": "node n2: cpu: 2 requested, 1 free of node capacity"},
		lost: map[string]map[string]string{"s/b": {"n2": "node n2: cpu: 2 requested, 1 free of node capacity"}},
		nodes: map[string]map[string]NodeAccount{
			"s/a": {"n1": acct(rl("cpu", "0"), rl("cpu", "3")), "n2": acct(rl("cpu", "0"), rl("cpu", "3"))},
			"s/b": {"n3": acct(rl("cpu", "2"), rl("cpu", "0"))},
		},
		bound:      map[string]map[string]corev1.ResourceList{"s/x": {"n3": rl("cpu", "2")}},
		active:     ns("s/b"),
		nextChange: inHour,
	}, {
		name: "resource the node capacity lacks has none",
		pools: []Pool{
			mk("s/a", "", 0, ns("n1"), rl("planetkube.io/egress-bandwidth", "1M")),
		},
		over: map[string]string{"s/a": "node n1: planetkube.io/egress-bandwidth: 1M requested, 0 free of node capacity"},
		lost: map[string]map[string]string{"s/a": {"n1": "node n1: planetkube.io/egress-bandwidth: 1M requested, 0 free of node capacity"}},
	}, {
		name: "split conservation over three levels",
		pools: []Pool{
			mk("s/r", "", 0, ns("n1", "n2"), rl("cpu", "4", "memory", "8Gi")),
			mk("s/c1", "s/r", 1, ns("n1", "n2"), rl("cpu", "1", "memory", "2Gi")),
			mk("s/c2", "s/r", 2, ns("n2"), rl("cpu", "2", "memory", "4Gi")),
			mk("s/g1", "s/c1", 3, ns("n1"), rl("cpu", "500m", "memory", "1Gi")),
			mk("s/g2", "s/c1", 4, ns("n1", "n2"), rl("cpu", "500m", "memory", "1Gi")),
		},
		nodes: map[string]map[string]NodeAccount{
			"s/r": {
				"n1": acct(rl("cpu", "1", "memory", "2Gi"), rl("cpu", "3", "memory", "6Gi")),
				"n2": acct(rl("cpu", "3", "memory", "6Gi"), rl("cpu", "1", "memory", "2Gi")),
			},
			"s/c1": {
				"n1": acct(rl("cpu", "1", "memory", "2Gi"), rl("cpu", "0", "memory", "0")),
				"n2": acct(rl("cpu", "500m", "memory", "1Gi"), rl("cpu", "500m", "memory", "1Gi")),
			},
			"s/c2": {"n2": acct(rl("cpu", "0", "memory", "0"), rl("cpu", "2", "memory", "4Gi"))},
			"s/g1": {"n1": acct(rl("cpu", "0", "memory", "0"), rl("cpu", "500m", "memory", "1Gi"))},
			"s/g2": {
				"n1": acct(rl("cpu", "0", "memory", "0"), rl("cpu", "500m", "memory", "1Gi")),
				"n2": acct(rl("cpu", "0", "memory", "0"), rl("cpu", "500m", "memory", "1Gi")),
			},
		},
	}, {
		name: "later sibling overcommits its parent",
		pools: []Pool{
			mk("s/r", "", 0, ns("n1"), rl("cpu", "2")),
			mk("s/c1", "s/r", 1, ns("n1"), rl("cpu", "1500m")),
			mk("s/c2", "s/r", 2, ns("n1"), rl("cpu", "1")),
			mk("s/g", "s/c2", 3, ns("n1"), rl("cpu", "1")),
		},
		over: map[string]string{"s/c2": "node n1: cpu: 1 requested, 500m free in parent s/r"},
		lost: map[string]map[string]string{
			"s/c2": {"n1": "node n1: cpu: 1 requested, 500m free in parent s/r"},
			"s/g":  {"n1": "node n1 is not held by parent s/c2"},
		},
		nodes: map[string]map[string]NodeAccount{"s/r": {"n1": acct(rl("cpu", "1500m"), rl("cpu", "500m"))}},
	}, {
		name: "child with a node outside its parent holds the others",
		pools: []Pool{
			mk("s/r", "", 0, ns("n1"), rl("cpu", "2")),
			mk("s/c", "s/r", 1, ns("n1", "n2"), rl("cpu", "1")),
		},
		lost: map[string]map[string]string{"s/c": {"n2": "node n2 is not held by parent s/r"}},
		nodes: map[string]map[string]NodeAccount{
			"s/r": {"n1": acct(rl("cpu", "1"), rl("cpu", "1"))},
			"s/c": {"n1": acct(rl("cpu", "0"), rl("cpu", "1"))},
		},
	}, {
		name: "a vanished node is lost to its root and the root's children alone",
		pools: []Pool{
			bound(mk("s/r", "", 0, ns("n1", "n2", "gone"), rl("cpu", "2")), "t/x", inHour),
			bound(mk("s/c", "s/r", 1, ns("n2", "gone"), rl("cpu", "1")), "t/y", inHour),
		},
		lost: map[string]map[string]string{
			"s/r": {"gone": "node gone has no known capacity"},
			"s/c": {"gone": "node gone is not held by parent s/r"},
		},
		nodes: map[string]map[string]NodeAccount{
			"s/r": {"n1": acct(rl("cpu", "2"), rl("cpu", "0")), "n2": acct(rl("cpu", "2"), rl("cpu", "0"))},
			"s/c": {"n2": acct(rl("cpu", "1"), rl("cpu", "0"))},
		},
		bound: map[string]map[string]corev1.ResourceList{
			"t/x": {"n1": rl("cpu", "2"), "n2": rl("cpu", "1")},
			"t/y": {"n2": rl("cpu", "1")},
		},
		active:     ns("s/r", "s/c"),
		nextChange: inHour,
	}, {
		name: "missing parent, and its child",
		pools: []Pool{
			mk("s/c", "s/gone", 0, ns("n1"), rl("cpu", "1")),
			mk("s/g", "s/c", 1, ns("n1"), rl("cpu", "1")),
		},
		invalid: map[string]string{"s/c": "parent s/gone not found", "s/g": "parent s/c is invalid"},
	}, {
		name: "child of an overcommitted root",
		pools: []Pool{
			mk("s/a", "", 0, ns("n1"), rl("cpu", "4")),
			mk("s/b", "", 1, ns("n1"), rl("cpu", "1")),
			mk("s/c", "s/b", 2, ns("n1"), rl("cpu", "1")),
		},
		over: map[string]string{"s/b": "node n1: cpu: 1 requested, 0 free of node capacity"},
		lost: map[string]map[string]string{
			"s/b": {"n1": "node n1: cpu: 1 requested, 0 free of node capacity"},
			"s/c": {"n1": "node n1 is not held by parent s/b"},
		},
	}, {
		name: "active bindings: exact amounts per node, summed per slice, free 0",
		pools: []Pool{
			mk("s/r", "", 0, ns("n1", "n2"), rl("cpu", "4", "memory", "6Gi")),
			bound(mk("s/b", "s/r", 1, ns("n1", "n2"), rl("cpu", "2", "memory", "4Gi")), "t/x", inHour),
			mk("s/g", "s/b", 2, ns("n1"), rl("cpu", "500m", "memory", "1Gi")),
			bound(mk("s/r2", "", 3, ns("n1"), rl("planetkube.io/slivers", "3", "memory", "1Gi")), "t/x", inTwo),
			bound(mk("s/other", "s/r", 4, ns("n2"), rl("cpu", "1")), "t/y", inTwo),
		},
		bound: map[string]map[string]corev1.ResourceList{
			"t/x": {
				"n1": rl("cpu", "1500m", "memory", "4Gi", "planetkube.io/slivers", "3"),
				"n2": rl("cpu", "2", "memory", "4Gi"),
			},
			"t/y": {"n2": rl("cpu", "1")},
		},
		nodes: map[string]map[string]NodeAccount{
			"s/r": {
				"n1": acct(rl("cpu", "2", "memory", "4Gi"), rl("cpu", "2", "memory", "2Gi")),
				"n2": acct(rl("cpu", "3", "memory", "4Gi"), rl("cpu", "1", "memory", "2Gi")),
			},
			"s/b": {
				"n1": acct(rl("cpu", "2", "memory", "4Gi"), rl("cpu", "0", "memory", "0")),
				"n2": acct(rl("cpu", "2", "memory", "4Gi"), rl("cpu", "0", "memory", "0")),
			},
			"s/r2": {"n1": acct(rl("planetkube.io/slivers", "3", "memory", "1Gi"), rl("planetkube.io/slivers", "0", "memory", "0"))},
		},
		active:     ns("s/b", "s/r2", "s/other"),
		nextChange: inHour,
	}, {
		name: "expired binding gives nothing",
		pools: []Pool{
			mk("s/r", "", 0, ns("n1"), rl("cpu", "4")),
			bound(mk("s/b", "s/r", 1, ns("n1"), rl("cpu", "2")), "t/x", now),
			mk("s/g", "s/b", 2, ns("n1"), rl("cpu", "500m")),
		},
		nodes: map[string]map[string]NodeAccount{
			"s/b": {"n1": acct(rl("cpu", "500m"), rl("cpu", "1500m"))},
		},
		expired: ns("s/b"),
	}, {
		name: "unknown and negative resources, node without capacity",
		pools: []Pool{
			mk("s/gpu", "", 0, ns("n1"), rl("cpu", "1", "nvidia.com/gpu", "1")),
			mk("s/neg", "", 1, ns("n1"), rl("cpu", "-1")),
			mk("s/far", "", 2, ns("n1", "n9"), rl("cpu", "1")),
		},
		invalid: map[string]string{
			"s/gpu": "unknown resource nvidia.com/gpu",
			"s/neg": "negative amount of cpu",
		},
		lost:  map[string]map[string]string{"s/far": {"n9": "node n9 has no known capacity"}},
		nodes: map[string]map[string]NodeAccount{"s/far": {"n1": acct(rl("cpu", "0"), rl("cpu", "1"))}},
	}, {
		name: "ties in Created are broken by Key, whatever the input order",
		pools: []Pool{
			mk("s/b", "", 0, ns("n1"), rl("cpu", "3")),
			mk("s/a", "", 0, ns("n1"), rl("cpu", "3")),
		},
		over: map[string]string{"s/b": "node n1: cpu: 3 requested, 1 free of node capacity"},
		lost: map[string]map[string]string{"s/b": {"n1": "node n1: cpu: 3 requested, 1 free of node capacity"}},
	}, {
		name: "a parent is judged before an older child; siblings by precedence",
		pools: []Pool{
			mk("s/c2", "s/r", 3, ns("n1"), rl("cpu", "2")),
			mk("s/c1", "s/r", 5, ns("n1"), rl("cpu", "2")),
			mk("s/old", "s/r", 0, ns("n1"), rl("cpu", "1")),
			mk("s/r", "", 1, ns("n1"), rl("cpu", "4")),
		},
		over:  map[string]string{"s/c1": "node n1: cpu: 2 requested, 1 free in parent s/r"},
		lost:  map[string]map[string]string{"s/c1": {"n1": "node n1: cpu: 2 requested, 1 free in parent s/r"}},
		nodes: map[string]map[string]NodeAccount{"s/r": {"n1": acct(rl("cpu", "3"), rl("cpu", "1"))}},
	}, {
		name: "cycle of parents, a self-parent, and a child hanging off the cycle",
		pools: []Pool{
			mk("s/a", "s/b", 0, ns("n1"), rl("cpu", "1")),
			mk("s/b", "s/a", 1, ns("n1"), rl("cpu", "1")),
			mk("s/c", "s/a", 2, ns("n1"), rl("cpu", "1")),
			mk("s/self", "s/self", 3, ns("n1"), rl("cpu", "1")),
		},
		invalid: map[string]string{
			"s/a":    "parents form a cycle: s/a -> s/b -> s/a",
			"s/b":    "parents form a cycle: s/b -> s/a -> s/b",
			"s/c":    "parent s/a is invalid",
			"s/self": "parents form a cycle: s/self -> s/self",
		},
	}, {
		name: "an allocation with no end gives its authority what its sub-pools leave, and sets no next change",
		pools: []Pool{
			allocated(mk("s/ple", "", 0, ns("n1", "n2"), rl("cpu", "2", "memory", "2Gi", "planetkube.io/slivers", "5")), "ple", time.Time{}),
			bound(mk("s/ple-one", "s/ple", 1, ns("n1"), rl("cpu", "500m")), "planetkube-auth-ple/x", inHour),
		},
		active:     []string{"s/ple", "s/ple-one"},
		nextChange: inHour,
		bound:      map[string]map[string]corev1.ResourceList{"planetkube-auth-ple/x": {"n1": rl("cpu", "500m")}},
		allocated: map[string]map[string]corev1.ResourceList{"ple": {
			"n1": rl("cpu", "1500m", "memory", "2Gi", "planetkube.io/slivers", "5"),
			"n2": rl("cpu", "2", "memory", "2Gi", "planetkube.io/slivers", "5"),
		}},
		nodes: map[string]map[string]NodeAccount{"s/ple": {
			"n1": acct(rl("cpu", "2", "memory", "2Gi", "planetkube.io/slivers", "5"), rl("cpu", "0", "memory", "0", "planetkube.io/slivers", "0")),
			"n2": acct(rl("cpu", "2", "memory", "2Gi", "planetkube.io/slivers", "5"), rl("cpu", "0", "memory", "0", "planetkube.io/slivers", "0")),
		}},
	}, {
		name: "two allocations to one authority add up; an ended one gives nothing; one that does not fit holds nothing there",
		pools: []Pool{
			allocated(mk("s/a", "", 0, ns("n1"), rl("cpu", "1")), "ple", time.Time{}),
			allocated(mk("s/b", "", 1, ns("n1", "n2"), rl("cpu", "1")), "ple", inTwo),
			allocated(mk("s/old", "", 2, ns("n3"), rl("cpu", "1")), "ple", now),
			allocated(mk("s/big", "", 3, ns("n1", "n3"), rl("cpu", "3")), "plc", time.Time{}),
		},
		active:     []string{"s/a", "s/b", "s/big"},
		expired:    []string{"s/old"},
		nextChange: inTwo,
		over:       map[string]string{"s/big": "node n1: cpu: 3 requested, 2 free of node capacity"},
		lost:       map[string]map[string]string{"s/big": {"n1": "node n1: cpu: 3 requested, 2 free of node capacity"}},
		allocated: map[string]map[string]corev1.ResourceList{
			"ple": {"n1": rl("cpu", "2"), "n2": rl("cpu", "1")},
			"plc": {"n3": rl("cpu", "3")},
		},
	}, {
		name: "an allocation on a sub-pool is invalid, and so are its children",
		pools: []Pool{
			mk("s/r", "", 0, ns("n1"), rl("cpu", "2")),
			allocated(mk("s/sub", "s/r", 1, ns("n1"), rl("cpu", "1")), "ple", time.Time{}),
			mk("s/subsub", "s/sub", 2, ns("n1"), rl("cpu", "1")),
		},
		active: []string{"s/sub"},
		invalid: map[string]string{
			"s/sub":    "only a root pool is allocated to an authority: a site gives part of its own nodes",
			"s/subsub": "parent s/sub is invalid",
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Account(tt.pools, testCapacity, now)
			for _, p := range tt.pools {
				pr := res.Pools[p.Key]
				if pr == nil {
					t.Fatalf("no result for %s", p.Key)
				}
				if pr.Invalid != tt.invalid[p.Key] {
					t.Errorf("%s: Invalid = %q, want %q", p.Key, pr.Invalid, tt.invalid[p.Key])
				}
				if pr.Overcommitted != tt.over[p.Key] {
					t.Errorf("%s: Overcommitted = %q, want %q", p.Key, pr.Overcommitted, tt.over[p.Key])
				}
				if got, want := pr.BindingActive, slices.Contains(tt.active, p.Key); got != want {
					t.Errorf("%s: BindingActive = %v, want %v", p.Key, got, want)
				}
				if got, want := pr.BindingExpired, slices.Contains(tt.expired, p.Key); got != want {
					t.Errorf("%s: BindingExpired = %v, want %v", p.Key, got, want)
				}
				if !pr.Contributes() && pr.Nodes != nil {
					t.Errorf("%s contributes nothing but has node accounts", p.Key)
				}
				if got, want := fmt.Sprint(pr.Lost), fmt.Sprint(tt.lost[p.Key]); got != want {
					t.Errorf("%s: Lost = %s, want %s", p.Key, got, want)
				}
			}
			for key, want := range tt.nodes {
				if got := dumpNodes(res.Pools[key].Nodes); got != dumpNodes(want) {
					t.Errorf("%s nodes:\n got %s\nwant %s", key, got, dumpNodes(want))
				}
			}
			if got, want := dumpBound(res.Bound), dumpBound(tt.bound); got != want {
				t.Errorf("Bound:\n got %s\nwant %s", got, want)
			}
			if got, want := dumpBound(res.Allocated), dumpBound(tt.allocated); got != want {
				t.Errorf("Allocated:\n got %s\nwant %s", got, want)
			}
			if !res.NextChange.Equal(tt.nextChange) {
				t.Errorf("NextChange = %v, want %v", res.NextChange, tt.nextChange)
			}
		})
	}
}

// TestAccountOrderIndependence shuffles a realistic set of pools (with ties
// in Created) and expects the same result every time.
func TestAccountOrderIndependence(t *testing.T) {
	pools, capacity, now := benchPools(2, 40)
	for i := range pools { // ties: pairs of pools created at once
		pools[i].Created = pools[i-i%2].Created
	}
	pools = append(pools, mk("site0/late", "", 0, ns("site0-n0"), rl("cpu", "64")))
	want := dump(Account(pools, capacity, now))
	if !strings.Contains(want, "site0/late") || !strings.Contains(want, "Overcommitted") {
		t.Fatalf("expected an overcommitted pool in:\n%s", want)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		shuffled := slices.Clone(pools)
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		if got := dump(Account(shuffled, capacity, now)); got != want {
			t.Fatalf("shuffle %d: result differs:\n got %s\nwant %s", i, got, want)
		}
	}
}

func TestAccountDoesNotMutateInputs(t *testing.T) {
	pools, capacity, now := benchPools(1, 30)
	before, capBefore := deepCopyPools(pools), deepCopyCapacity(capacity)
	Account(pools, capacity, now)
	if !reflect.DeepEqual(pools, before) {
		t.Error("Account changed its pools")
	}
	if !reflect.DeepEqual(capacity, capBefore) {
		t.Error("Account changed the capacity")
	}
}

func TestBenchPoolsAllContribute(t *testing.T) {
	pools, capacity, now := benchPools(5, 200)
	res := Account(pools, capacity, now)
	if len(pools) != 200 || len(capacity) != 1000 {
		t.Fatalf("got %d pools over %d nodes, want 200 over 1000", len(pools), len(capacity))
	}
	for key, pr := range res.Pools {
		if !pr.Contributes() {
			t.Errorf("%s: invalid %q, overcommitted %q", key, pr.Invalid, pr.Overcommitted)
		}
	}
	if len(res.Bound) == 0 || res.NextChange.IsZero() {
		t.Error("expected active bindings")
	}
}

func TestFits(t *testing.T) {
	tests := []struct {
		name       string
		free, want corev1.ResourceList
		short      corev1.ResourceName
		ok         bool
	}{
		{"equal fits", rl("cpu", "2", "memory", "1Gi"), rl("cpu", "2000m", "memory", "1024Mi"), "", true},
		{"less fits", rl("cpu", "2"), rl("cpu", "1"), "", true},
		{"nothing wanted fits", nil, nil, "", true},
		{"zero of an absent resource fits", rl("cpu", "1"), rl("memory", "0"), "", true},
		{"too much", rl("cpu", "1"), rl("cpu", "1001m"), "cpu", false},
		{"absent counts as zero", rl("cpu", "1"), rl("memory", "1"), "memory", false},
		{"first short resource by name", rl("cpu", "1", "memory", "1"), rl("memory", "2", "cpu", "2"), "cpu", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			short, ok := Fits(tt.free, tt.want)
			if short != tt.short || ok != tt.ok {
				t.Errorf("Fits = %q, %v; want %q, %v", short, ok, tt.short, tt.ok)
			}
		})
	}
}

func TestAddSubRestrictDoNotShare(t *testing.T) {
	src := rl("cpu", "1")
	dst := corev1.ResourceList{}
	Add(dst, src)
	Add(dst, src)
	diff := Sub(dst, src)
	if q := dst[corev1.ResourceCPU]; q.String() != "2" {
		t.Errorf("Add: cpu = %s, want 2", q.String())
	}
	if q := diff[corev1.ResourceCPU]; q.String() != "1" {
		t.Errorf("Sub: cpu = %s, want 1", q.String())
	}
	if q := src[corev1.ResourceCPU]; q.String() != "1" {
		t.Errorf("src changed: cpu = %s", q.String())
	}
	r := Restrict(rl("cpu", "1", "memory", "1Gi"), rl("cpu", "4", "planetkube.io/slivers", "2"))
	if got := dumpList(r); got != "cpu=1000m planetkube.io/slivers=0m" {
		t.Errorf("Restrict = %s", got)
	}
}

// dumpList writes a list in name order, quantities in canonical form, so
// that equal amounts written differently compare equal.
func dumpList(l corev1.ResourceList) string {
	names := make([]string, 0, len(l))
	for name := range l {
		names = append(names, string(name))
	}
	slices.Sort(names)
	var b strings.Builder
	for i, name := range names {
		q := l[corev1.ResourceName(name)].DeepCopy()
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%s", name, canonical(q))
	}
	return b.String()
}

// canonical writes q in its smallest exact unit so that 1Gi and 1024Mi, or
// 2 and 2000m, print alike.
func canonical(q resource.Quantity) string {
	return fmt.Sprintf("%dm", q.MilliValue())
}

func dumpNodes(m map[string]NodeAccount) string {
	var b strings.Builder
	for _, n := range sortedKeys(m) {
		fmt.Fprintf(&b, "[%s: allocated %s; free %s]", n, dumpList(m[n].Allocated), dumpList(m[n].Free))
	}
	return b.String()
}

func dumpBound(m map[string]map[string]corev1.ResourceList) string {
	var b strings.Builder
	for _, s := range sortedKeys(m) {
		for _, n := range sortedKeys(m[s]) {
			fmt.Fprintf(&b, "[%s on %s: %s]", s, n, dumpList(m[s][n]))
		}
	}
	return b.String()
}

func dump(r Result) string {
	var b strings.Builder
	for _, key := range sortedKeys(r.Pools) {
		pr := r.Pools[key]
		fmt.Fprintf(&b, "%s Invalid=%q Overcommitted=%q active=%v expired=%v %s\n",
			key, pr.Invalid, pr.Overcommitted, pr.BindingActive, pr.BindingExpired, dumpNodes(pr.Nodes))
	}
	fmt.Fprintf(&b, "bound %s\nallocated %s\nnext %v\n", dumpBound(r.Bound), dumpBound(r.Allocated), r.NextChange)
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func deepCopyPools(pools []Pool) []Pool {
	out := make([]Pool, len(pools))
	for i, p := range pools {
		p.Nodes = slices.Clone(p.Nodes)
		p.PerNode = p.PerNode.DeepCopy()
		if p.Binding != nil {
			b := *p.Binding
			p.Binding = &b
		}
		out[i] = p
	}
	return out
}

func deepCopyCapacity(c Capacity) Capacity {
	out := make(Capacity, len(c))
	for n, l := range c {
		out[n] = l.DeepCopy()
	}
	return out
}

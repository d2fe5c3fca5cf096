package pools

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
)

func TestResolve(t *testing.T) {
	nodes := []NodeInfo{
		{Name: "a1", Site: "a", Labels: map[string]string{"zone": "x"}},
		{Name: "a2", Site: "a", Labels: map[string]string{"zone": "y"}},
		{Name: "b1", Site: "b", Labels: map[string]string{"zone": "x"}},
	}
	zoneX := labels.SelectorFromSet(labels.Set{"zone": "x"})
	tests := []struct {
		name        string
		spec        Spec
		wantNodes   []string
		wantInvalid string
	}{
		{"root takes its site's nodes only", Spec{Key: "a/r", Site: "a"}, []string{"a1", "a2"}, ""},
		{"root selector stays in its site", Spec{Key: "a/r", Site: "a", Selector: zoneX}, []string{"a1"}, ""},
		{"root names its own node", Spec{Key: "a/r", Site: "a", Names: []string{"a2"}}, []string{"a2"}, ""},
		{"root names another site's node", Spec{Key: "a/r", Site: "a", Names: []string{"b1"}}, nil, "node b1 belongs to site b, not a"},
		{"root names a missing node: lost, not invalid", Spec{Key: "a/r", Site: "a", Names: []string{"zz", "a1"}}, []string{"a1", "zz"}, ""},
		{"root lists another site", Spec{Key: "a/r", Site: "a", Sites: []string{"b"}}, nil, "cannot take nodes of site b"},
		{"root matching nothing", Spec{Key: "c/r", Site: "c"}, nil, "matches no node of site c"},
		{"caller's invalid stands", Spec{Key: "a/r", Site: "a", Invalid: "bad selector"}, nil, "bad selector"},
		{"sub-pool names nodes (Account checks them)", Spec{Key: "a/s", Site: "a", Parent: "a/r", Names: []string{"b1", "a1"}}, []string{"a1", "b1"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Resolve([]Spec{tt.spec}, nodes)[0]
			if !slices.Equal(got.Nodes, tt.wantNodes) {
				t.Errorf("nodes = %v, want %v", got.Nodes, tt.wantNodes)
			}
			if (tt.wantInvalid == "") != (got.Invalid == "") || !strings.Contains(got.Invalid, tt.wantInvalid) {
				t.Errorf("invalid = %q, want one containing %q", got.Invalid, tt.wantInvalid)
			}
		})
	}
}

func TestResolveSubPoolsFromTheirParents(t *testing.T) {
	nodes := []NodeInfo{
		{Name: "a1", Site: "a", Labels: map[string]string{"zone": "x"}},
		{Name: "a2", Site: "a", Labels: map[string]string{"zone": "y"}},
		{Name: "b1", Site: "b", Labels: map[string]string{"zone": "x"}},
	}
	got := Resolve([]Spec{
		{Key: "a/grandchild", Site: "a", Parent: "a/child"}, // listed before its parents
		{Key: "a/child", Site: "a", Parent: "a/r", Selector: labels.SelectorFromSet(labels.Set{"zone": "x"})},
		{Key: "a/r", Site: "a"},
		{Key: "a/loop1", Site: "a", Parent: "a/loop2"},
		{Key: "a/loop2", Site: "a", Parent: "a/loop1"},
	}, nodes)
	want := map[string][]string{"a/grandchild": {"a1"}, "a/child": {"a1"}, "a/r": {"a1", "a2"}, "a/loop1": nil, "a/loop2": nil}
	for _, p := range got {
		if !slices.Equal(p.Nodes, want[p.Key]) {
			t.Errorf("%s: nodes = %v, want %v", p.Key, p.Nodes, want[p.Key])
		}
	}
}

func TestResolvedMissingNodeIsLostInAccount(t *testing.T) {
	cpu := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
	ps := Resolve([]Spec{{Key: "a/r", Site: "a", Names: []string{"a1", "gone"}, PerNode: cpu}}, []NodeInfo{{Name: "a1", Site: "a"}})
	res := Account(ps, Capacity{"a1": cpu}, timeZero)
	r := res.Pools["a/r"]
	if r.Invalid != "" || !r.Holds("a1") || r.Holds("gone") || r.Lost["gone"] != "node gone does not exist" {
		t.Errorf("result = %+v, want a1 held and gone lost as missing", r)
	}
}

func TestResolvedInvalidPoolIsInvalidInAccount(t *testing.T) {
	nodes := []NodeInfo{{Name: "a1", Site: "a"}, {Name: "b1", Site: "b"}}
	cpu := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
	ps := Resolve([]Spec{
		{Key: "a/r", Site: "a", Names: []string{"b1"}, PerNode: cpu},
		{Key: "a/s", Site: "a", Parent: "a/r", PerNode: cpu},
	}, nodes)
	res := Account(ps, Capacity{"a1": cpu, "b1": cpu}, timeZero)
	if r := res.Pools["a/r"]; !strings.Contains(r.Invalid, "belongs to site b") {
		t.Errorf("root: invalid = %q", r.Invalid)
	}
	if r := res.Pools["a/s"]; !strings.Contains(r.Invalid, "parent a/r is invalid") {
		t.Errorf("child: invalid = %q", r.Invalid)
	}
	if got := Reserved(ps, res); len(got) != 0 {
		t.Errorf("reserved = %v, want nothing", got)
	}
}

func TestCapacityOfAndReserved(t *testing.T) {
	alloc := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods: resource.MustParse("110"), "nvidia.com/gpu": resource.MustParse("1"),
	}
	c := CapacityOf(alloc)
	if q := c[planetv1.ResourceSlivers]; q.Value() != 110 {
		t.Errorf("slivers = %v, want 110", q.String())
	}
	if _, ok := c["nvidia.com/gpu"]; ok {
		t.Error("capacity lists a resource pools cannot hold")
	}
	if _, ok := c[planetv1.ResourceEgressBandwidth]; ok {
		t.Error("egress bandwidth listed for a node that does not advertise it")
	}
	nodes := []NodeInfo{{Name: "a1", Site: "a"}}
	two := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}
	ps := Resolve([]Spec{
		{Key: "a/r1", Site: "a", PerNode: two},
		{Key: "a/r2", Site: "a", PerNode: two},
		{Key: "a/s", Site: "a", Parent: "a/r1", PerNode: two},
	}, nodes)
	got := Reserved(ps, Account(ps, Capacity{"a1": c}, timeZero))
	if q := got["a1"][corev1.ResourceCPU]; q.Cmp(resource.MustParse("4")) != 0 {
		t.Errorf("reserved cpu = %s, want 4 (two root pools; the sub-pool is inside one)", q.String())
	}
}

var timeZero time.Time

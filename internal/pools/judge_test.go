package pools

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestJudge(t *testing.T) {
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	cpu := func(q string) corev1.ResourceList {
		return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(q)}
	}
	nodes := []NodeInfo{{Name: "a1", Site: "a"}, {Name: "a2", Site: "a"}}
	capacity := Capacity{"a1": cpu("4"), "a2": cpu("4")}
	root := Spec{Key: "a/root", Site: "a", PerNode: cpu("3"), Created: now.Add(-time.Hour)}
	child := Spec{Key: "a/child", Site: "a", Parent: "a/root", PerNode: cpu("2"), Created: now.Add(-time.Minute)}
	tests := []struct {
		name      string
		specs     []Spec
		candidate Spec
		fault     string
		why       string
	}{
		{"a part that fits", []Spec{root, child}, Spec{Key: "a/part", Site: "a", Parent: "a/root", PerNode: cpu("1")}, "", ""},
		{"a part past what the parent has left", []Spec{root, child}, Spec{Key: "a/part", Site: "a", Parent: "a/root", PerNode: cpu("2")}, FaultPerNode, "does not fit"},
		{"judged last, even if created first", []Spec{root, child}, Spec{Key: "a/part", Site: "a", Parent: "a/root", PerNode: cpu("2"), Created: now.Add(-2 * time.Hour)}, FaultPerNode, "does not fit"},
		{"a root pool past the node", []Spec{root}, Spec{Key: "a/big", Site: "a", PerNode: cpu("2")}, FaultPerNode, "does not fit"},
		{"a root pool naming another site's node", nil, Spec{Key: "b/r", Site: "b", Names: []string{"a1"}, PerNode: cpu("1")}, FaultNodes, "belongs to site a"},
		{"a change replaces the pool of its key", []Spec{root, child}, Spec{Key: "a/child", Site: "a", Parent: "a/root", PerNode: cpu("3")}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Judge(tt.specs, nodes, capacity, tt.candidate, now)
			if v.Fault != tt.fault || !strings.Contains(v.Why, tt.why) {
				t.Fatalf("Judge = %q %q, want %q and a reason containing %q", v.Fault, v.Why, tt.fault, tt.why)
			}
			if v.After.Pools[tt.candidate.Key] == nil {
				t.Fatal("the candidate is not in the accounting")
			}
		})
	}
}

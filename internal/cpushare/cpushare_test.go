package cpushare

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
)

func TestCPURequest(t *testing.T) {
	tests := []struct {
		name                  string
		allocatable, reserved string
		share, sharesPerNode  int32
		want                  string
	}{
		{"share 1 of 4 CPUs", "4", "0", 1, DefaultSharesPerNode, "40m"},
		{"share 10 of 4 CPUs", "4", "0", 10, DefaultSharesPerNode, "400m"},
		{"reserved CPU is taken out", "4", "1500m", 1, DefaultSharesPerNode, "25m"},
		{"rounded down to the millicore", "3500m", "0", 3, DefaultSharesPerNode, "105m"},
		{"rounded down, fraction", "1", "0", 1, 3, "333m"},
		{"at least 1m", "50m", "0", 1, DefaultSharesPerNode, "1m"},
		{"everything reserved: 1m", "4", "4", 1, DefaultSharesPerNode, "1m"},
		{"over-reserved: 1m", "4", "6", 5, DefaultSharesPerNode, "1m"},
		{"share 0 counts as 1", "4", "0", 0, DefaultSharesPerNode, "40m"},
		{"negative share counts as 1", "4", "0", -3, DefaultSharesPerNode, "40m"},
		{"share clamped to sharesPerNode", "4", "1", 1000, DefaultSharesPerNode, "3"},
		{"sharesPerNode 0 means the default", "4", "0", 1, 0, "40m"},
		{"other sharesPerNode", "8", "0", 1, 16, "500m"},
		{"big node", "256", "0", 1, DefaultSharesPerNode, "2560m"},
		{"millicore allocatable", "7910m", "10m", 2, DefaultSharesPerNode, "158m"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := CPURequest(resource.MustParse(tc.allocatable), resource.MustParse(tc.reserved), tc.share, tc.sharesPerNode)
			if want := resource.MustParse(tc.want); got.Cmp(want) != 0 {
				t.Errorf("CPURequest = %s, want %s", got.String(), want.String())
			}
		})
	}
}

// TestSumWithinAllocatable checks that sharesPerNode slivers of share 1 fit
// in the node's unreserved CPU.
func TestSumWithinAllocatable(t *testing.T) {
	for _, alloc := range []string{"1", "3500m", "7910m", "64"} {
		a := resource.MustParse(alloc)
		r := resource.MustParse("250m")
		var sum resource.Quantity
		for range DefaultSharesPerNode {
			q := CPURequest(a, r, 1, DefaultSharesPerNode)
			sum.Add(q)
		}
		a.Sub(r)
		if sum.Cmp(a) > 0 {
			t.Errorf("allocatable %s: %d share-1 requests sum to %s, more than the unreserved %s",
				alloc, DefaultSharesPerNode, sum.String(), a.String())
		}
	}
}

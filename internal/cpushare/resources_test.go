package cpushare

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
)

func list(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func TestSliverResources(t *testing.T) {
	alloc := list("cpu", "8", "memory", "32Gi") // no ephemeral-storage: its request is left to default to the limit
	tests := []struct {
		name            string
		reserved, bound corev1.ResourceList
		share           int32
		wantReq, wantLi corev1.ResourceList
	}{
		{
			name: "fair share of an unreserved node", share: 1,
			wantReq: list("cpu", "80m", "memory", "327Mi"), wantLi: list("memory", "32Gi", "ephemeral-storage", "10Gi"),
		},
		{
			name: "fair share of what root pools leave", reserved: list("cpu", "4", "memory", "16Gi"), share: 2,
			wantReq: list("cpu", "80m", "memory", "327Mi"), wantLi: list("memory", "16Gi", "ephemeral-storage", "10Gi"),
		},
		{
			name: "bound cpu and memory: Guaranteed with exactly those", reserved: list("cpu", "4", "memory", "16Gi"),
			bound: list("cpu", "2", "memory", "4Gi", "ephemeral-storage", "20Gi"), share: 1,
			wantReq: list("cpu", "2", "memory", "4Gi", "ephemeral-storage", "20Gi"),
			wantLi:  list("cpu", "2", "memory", "4Gi", "ephemeral-storage", "20Gi"),
		},
		{
			name: "bound cpu only: memory falls back to the fair share", reserved: list("cpu", "2"),
			bound: list("cpu", "2"), share: 1,
			wantReq: list("cpu", "2", "memory", "327Mi"), wantLi: list("cpu", "2", "memory", "32Gi", "ephemeral-storage", "10Gi"),
		},
		{
			name: "a zero binding is no binding", bound: list("cpu", "0"), share: 1,
			wantReq: list("cpu", "80m", "memory", "327Mi"), wantLi: list("memory", "32Gi", "ephemeral-storage", "10Gi"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SliverResources(alloc, tt.reserved, tt.bound, nil, tt.share, DefaultSharesPerNode)
			if !equality.Semantic.DeepEqual(got.Requests, tt.wantReq) {
				t.Errorf("requests = %v, want %v", got.Requests, tt.wantReq)
			}
			if !equality.Semantic.DeepEqual(got.Limits, tt.wantLi) {
				t.Errorf("limits = %v, want %v", got.Limits, tt.wantLi)
			}
		})
	}
}

func TestSliverEphemeralStorageRequest(t *testing.T) {
	got := SliverResources(list("cpu", "1", "ephemeral-storage", "100Gi"), nil, nil, nil, 1, DefaultSharesPerNode)
	if q := got.Requests[corev1.ResourceEphemeralStorage]; q.Cmp(resource.MustParse("1Gi")) != 0 {
		t.Errorf("ephemeral-storage request = %s, want 1Gi (a hundredth of 100Gi)", q.String())
	}
	got = SliverResources(list("cpu", "1", "ephemeral-storage", "10Ti"), nil, nil, nil, 1, DefaultSharesPerNode)
	if q := got.Requests[corev1.ResourceEphemeralStorage]; q.Cmp(DefaultEphemeralStorage) != 0 {
		t.Errorf("ephemeral-storage request = %s, want the 10Gi limit", q.String())
	}
}

// TestSliverResourcesFitWhatIsFree: one share-100 slice next to a DaemonSet
// pod asks for no more than the node has free, and reserved amounts are
// never cut.
func TestSliverResourcesFitWhatIsFree(t *testing.T) {
	alloc := list("cpu", "4", "memory", "16Gi", "ephemeral-storage", "100Gi")
	tests := []struct {
		name          string
		bound, free   corev1.ResourceList
		share         int32
		wantCPU       string
		wantMem       string
		wantEphemeral string
	}{
		{"share 100 next to a 500m/1Gi DaemonSet pod", nil, list("cpu", "3500m", "memory", "15Gi", "ephemeral-storage", "100Gi"), 100, "3500m", "15Gi", "10Gi"},
		{"nothing free: zero requests, never negative", nil, list("cpu", "0", "memory", "0", "ephemeral-storage", "0"), 1, "0", "0", "0"},
		{"room to spare: the fair share", nil, list("cpu", "4", "memory", "16Gi", "ephemeral-storage", "100Gi"), 1, "40m", "163Mi", "1Gi"},
		{"bound cpu is not cut, the rest is", list("cpu", "2"), list("cpu", "0", "memory", "1Gi", "ephemeral-storage", "0"), 100, "2", "1Gi", "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SliverResources(alloc, nil, tt.bound, tt.free, tt.share, DefaultSharesPerNode)
			for name, want := range map[corev1.ResourceName]string{"cpu": tt.wantCPU, "memory": tt.wantMem, "ephemeral-storage": tt.wantEphemeral} {
				if q := got.Requests[name]; q.Cmp(resource.MustParse(want)) != 0 {
					t.Errorf("request %s = %s, want %s", name, q.String(), want)
				}
			}
		})
	}
}

// TestWithin checks that an allocation's part replaces the node's
// allocatable and reserved amounts for the resources it lists only, and
// that the inputs are left as they were.
func TestWithin(t *testing.T) {
	alloc, reserved := list("cpu", "8", "memory", "32Gi", "ephemeral-storage", "100Gi"), list("cpu", "4", "memory", "16Gi")
	tests := []struct {
		name                 string
		part                 corev1.ResourceList
		wantAlloc, wantResvd corev1.ResourceList
	}{
		{name: "no part: the node's", wantAlloc: alloc, wantResvd: reserved},
		{
			name: "cpu and memory allocated: those are the part's, with nothing reserved", part: list("cpu", "2", "memory", "4Gi", "planetkube.io/slivers", "5"),
			wantAlloc: list("cpu", "2", "memory", "4Gi", "ephemeral-storage", "100Gi"), wantResvd: list(),
		},
		{
			name: "only slivers capped: the node's", part: list("planetkube.io/slivers", "5"),
			wantAlloc: alloc, wantResvd: reserved,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := alloc.DeepCopy()
			a, r := Within(alloc, reserved, tt.part)
			if !equality.Semantic.DeepEqual(a, tt.wantAlloc) || !equality.Semantic.DeepEqual(r, tt.wantResvd) {
				t.Errorf("Within = %v, %v; want %v, %v", a, r, tt.wantAlloc, tt.wantResvd)
			}
			if !equality.Semantic.DeepEqual(alloc, before) || len(reserved) != 2 {
				t.Errorf("Within changed its inputs: %v, %v", alloc, reserved)
			}
		})
	}
	// A sliver of share 1 on a 2-cpu allocation: 2 cpu / 100 shares.
	a, r := Within(alloc, reserved, list("cpu", "2", "memory", "4Gi"))
	got := SliverResources(a, r, nil, nil, 1, 100)
	if got.Requests.Cpu().String() != "20m" || got.Limits.Memory().String() != "4Gi" {
		t.Errorf("SliverResources within a 2-cpu, 4Gi allocation = %v", got)
	}
}

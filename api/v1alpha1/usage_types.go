package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// SliceUsage is what a slice's slivers used, summed over this install's
// nodes, as their node agents report it.
type SliceUsage struct {
	// cpuSeconds is the CPU time its slivers used here, in seconds, counted
	// since the manager first saw it (a manager restart loses at most one
	// refresh of it).
	// +optional
	CPUSeconds int64 `json:"cpuSeconds"`

	// flows is how many of its flows the node agents recorded, counted as
	// cpuSeconds is.
	// +optional
	Flows int64 `json:"flows"`

	// bytesToday is what it sent today (each node's bandwidth budget
	// period), summed over nodes; budgetBytes the day's budgets on those
	// nodes. Both 0 where bandwidth budgets are off.
	// +optional
	BytesToday int64 `json:"bytesToday,omitempty"`
	// +optional
	BudgetBytes int64 `json:"budgetBytes,omitempty"`

	// nodes counts the nodes whose agents reported it at the last refresh.
	// +optional
	Nodes int32 `json:"nodes"`

	// updatedAt is the last refresh (every few minutes, --usage-interval).
	// +optional
	UpdatedAt *metav1.Time `json:"updatedAt,omitempty"`
}

// SiteContribution is what a site's nodes give, as their agents report it.
type SiteContribution struct {
	// slivers counts the slivers its nodes run now; foreignSlivers those
	// of them that are other sites' (or other authorities') slices.
	// +optional
	Slivers int32 `json:"slivers"`
	// +optional
	ForeignSlivers int32 `json:"foreignSlivers"`

	// cpuSeconds is the CPU time slices used on its nodes, in seconds;
	// cpuSecondsToOthers the part of it used by other sites' (and other
	// authorities') slices. Counted as a slice's usage is.
	// +optional
	CPUSeconds int64 `json:"cpuSeconds"`
	// +optional
	CPUSecondsToOthers int64 `json:"cpuSecondsToOthers"`

	// updatedAt is the last refresh.
	// +optional
	UpdatedAt *metav1.Time `json:"updatedAt,omitempty"`
}

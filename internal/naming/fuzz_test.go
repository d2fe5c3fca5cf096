package naming

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzNames checks that, whatever node and slice names come in (node names
// are set by whoever registers a node), the derived names are valid DNS-1123
// labels and deterministic.
func FuzzNames(f *testing.F) {
	f.Add("codeen", "planetlab1.cs.princeton.edu", "princeton")
	f.Add("a", "NODE_WITH.UPPER", "x")
	f.Add("s-", "-", "0")
	f.Fuzz(func(t *testing.T, slice, node, site string) {
		for _, name := range []string{SliverName(slice, node), SliceNamespace(site, slice), ReservedSliverName(slice, node, site)} {
			if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
				t.Fatalf("invalid name %q from slice %q node %q site %q: %v", name, slice, node, site, errs)
			}
		}
		if SliverName(slice, node) != SliverName(slice, node) {
			t.Fatal("SliverName is not deterministic")
		}
	})
}

package naming

import (
	"strings"
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

// FuzzIsDNS1123Label checks the quick label check against apimachinery's.
func FuzzIsDNS1123Label(f *testing.F) {
	for _, s := range []string{"", "a", "-a", "a-", "a-b", "A", "a.b", "a_b", "0", strings.Repeat("a", 63), strings.Repeat("a", 64), "é", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := isDNS1123Label(s), len(validation.IsDNS1123Label(s)) == 0; got != want {
			t.Fatalf("isDNS1123Label(%q) = %v, validation says %v", s, got, want)
		}
	})
}

// FuzzParseFullName checks that a full name that parses is rebuilt from its
// parts, and that the namespaces derived from it are valid and distinct from
// local ones.
func FuzzParseFullName(f *testing.F) {
	f.Add("plc.princeton.codeen")
	f.Add("plc.japan.utokyo.codeen")
	f.Add("..")
	f.Add("a.b.c-")
	f.Fuzz(func(t *testing.T, full string) {
		authority, site, slice, ok := ParseFullName(full)
		if !ok {
			return
		}
		if FullName(authority, site, slice) != full {
			t.Fatalf("%q parsed as %q %q %q", full, authority, site, slice)
		}
		for _, name := range []string{AuthorityNamespace(authority), ForeignSliceNamespace(authority, site, slice)} {
			if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
				t.Fatalf("invalid namespace %q from %q: %v", name, full, errs)
			}
		}
		if errs := validation.IsDNS1123Subdomain(ForeignSliceName(site, slice)); len(errs) > 0 || !ValidSlice(ForeignSliceName(site, slice)) {
			t.Fatalf("invalid slice name %q from %q: %v", ForeignSliceName(site, slice), full, errs)
		}
		if ForeignSliceNamespace(authority, site, slice) == SliceNamespace(site, slice) {
			t.Fatalf("a foreign slice namespace equals a local one: %q", full)
		}
	})
}

package naming

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func checkLabel(t *testing.T, what, got string) {
	t.Helper()
	if errs := validation.IsDNS1123Label(got); len(errs) != 0 {
		t.Errorf("%s = %q is not a DNS-1123 label: %v", what, got, errs)
	}
}

func TestFullName(t *testing.T) {
	if got, want := FullName("plc", "princeton", "codeen"), "plc.princeton.codeen"; got != want {
		t.Errorf("FullName = %q, want %q", got, want)
	}
}

func TestRBACNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{SiteRoleBinding(RolePI), "planetkube-site-pi"},
		{SiteRoleBinding(RoleTech), "planetkube-site-tech"},
		{SiteRoleBinding(RoleUser), "planetkube-site-user"},
		{SiteClusterRole(RolePI), "planetkube-site-pi"},
		{SiteClusterRole(RoleUser), "planetkube-site-user"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestSliceNamespace(t *testing.T) {
	site32 := strings.Repeat("s", 32)
	tests := []struct {
		name, site, slice string
		want              string // "" = hashed: check shape only
		wantPrefix        string
	}{
		{name: "short", site: "princeton", slice: "codeen", want: "princeton-codeen"},
		{name: "exactly 63", site: "a", slice: strings.Repeat("b", 61), want: "a-" + strings.Repeat("b", 61)},
		{name: "64", site: "a", slice: strings.Repeat("b", 62), wantPrefix: "a-" + strings.Repeat("b", 52) + "-"},
		{name: "longest", site: site32, slice: strings.Repeat("c", 64), wantPrefix: site32 + "-" + strings.Repeat("c", 21) + "-"},
		{name: "cut at a dash", site: "a", slice: strings.Repeat("b", 52) + "-x-" + strings.Repeat("c", 20), wantPrefix: "a-" + strings.Repeat("b", 52) + "-"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := SliceNamespace(tc.site, tc.slice)
			checkLabel(t, "SliceNamespace", got)
			if got != SliceNamespace(tc.site, tc.slice) {
				t.Errorf("not deterministic")
			}
			if tc.want != "" {
				if got != tc.want {
					t.Errorf("got %q, want %q", got, tc.want)
				}
				return
			}
			if !strings.HasPrefix(got, tc.wantPrefix) || len(got) != len(tc.wantPrefix)+hashLen {
				t.Errorf("got %q, want %q + 8 hex chars", got, tc.wantPrefix)
			}
			if strings.Contains(got, "--") {
				t.Errorf("got %q: prefix not trimmed", got)
			}
		})
	}
}

func TestSliverName(t *testing.T) {
	long := "node-" + strings.Repeat("x", 70) + ".example.org"
	tests := []struct {
		name, slice, node string
		want              string // "" = hashed: check wantPrefix
		wantPrefix        string
	}{
		{name: "short", slice: "codeen", node: "node1", want: "codeen-node1"},
		{name: "exactly 63", slice: "s", node: strings.Repeat("n", 61), want: "s-" + strings.Repeat("n", 61)},
		{name: "64", slice: "s", node: strings.Repeat("n", 62), wantPrefix: "s-" + strings.Repeat("n", 52) + "-"},
		{name: "dots", slice: "codeen", node: "planetlab1.cs.princeton.edu", wantPrefix: "codeen-planetlab1-cs-princeton-edu-"},
		{name: "uppercase", slice: "codeen", node: "Node-A", wantPrefix: "codeen-node-a-"},
		{name: "long subdomain", slice: "codeen", node: long, wantPrefix: "codeen-node-" + strings.Repeat("x", 42) + "-"},
		{name: "dots at the cut", slice: "s", node: strings.Repeat("n", 51) + "..x", wantPrefix: "s-" + strings.Repeat("n", 51) + "-"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := SliverName(tc.slice, tc.node)
			checkLabel(t, "SliverName", got)
			if got != SliverName(tc.slice, tc.node) {
				t.Errorf("not deterministic")
			}
			if tc.want != "" {
				if got != tc.want {
					t.Errorf("got %q, want %q", got, tc.want)
				}
				return
			}
			if !strings.HasPrefix(got, tc.wantPrefix) || len(got) != len(tc.wantPrefix)+hashLen {
				t.Errorf("got %q, want %q + 8 hex chars", got, tc.wantPrefix)
			}
		})
	}
}

// TestGeneratedValid checks validity, length and determinism over many
// generated inputs of every length and shape the API allows.
func TestGeneratedValid(t *testing.T) {
	alphabet := "abcdefghijklmnopqrstuvwxyz0123456789"
	gen := func(n, seed int, extra string) string {
		chars := alphabet + extra
		b := make([]byte, n)
		for i := range b {
			b[i] = chars[(seed*31+i*17)%len(chars)]
		}
		// A DNS label or subdomain starts and ends with an alphanumeric.
		b[0], b[n-1] = 'a', 'z'
		return string(b)
	}
	for siteLen := 1; siteLen <= 32; siteLen += 3 {
		for sliceLen := 1; sliceLen <= 64; sliceLen++ {
			site, slice := gen(siteLen, sliceLen, ""), gen(sliceLen, siteLen, "-")
			checkLabel(t, fmt.Sprintf("SliceNamespace(%q, %q)", site, slice), SliceNamespace(site, slice))
		}
	}
	for sliceLen := 1; sliceLen <= 64; sliceLen += 7 {
		for nodeLen := 1; nodeLen <= 253; nodeLen += 5 {
			slice, node := gen(sliceLen, nodeLen, "-"), gen(nodeLen, sliceLen, "-.ABC")
			checkLabel(t, fmt.Sprintf("SliverName(%q, %q)", slice, node), SliverName(slice, node))
		}
	}
}

func TestDistinct(t *testing.T) {
	long := strings.Repeat("x", 60)
	namespaces := [][2]string{
		{"a", "b-c"}, {"a", "b"}, {"ab", "c"}, {"a", long}, {"a", long + "y"},
		{"a", long + "z"}, {"ab", long}, {"a", "b" + long}, {"a", long + "-y"},
	}
	seen := map[string][2]string{}
	for _, in := range namespaces {
		got := SliceNamespace(in[0], in[1])
		if prev, ok := seen[got]; ok {
			t.Errorf("SliceNamespace%v and %v both give %q", prev, in, got)
		}
		seen[got] = in
		if got == in[0] {
			t.Errorf("SliceNamespace%v equals the site namespace", in)
		}
	}

	// Slivers of different slices live in different namespaces, so sliver
	// names need only be distinct among the nodes of one slice.
	longNode := strings.Repeat("n", 70)
	slivers := [][2]string{
		{"s", "a.b"}, {"s", "a-b"}, {"s", "A-b"}, {"s", "a.B"}, {"s", "a-b.c"},
		{"s", longNode}, {"s", longNode + "1"}, {"s", longNode + ".1"}, {"s", longNode + "-1"},
		{"s", "n.example.org"}, {"s", "n-example-org"},
	}
	seenPods := map[string][2]string{}
	for _, in := range slivers {
		got := SliverName(in[0], in[1])
		if prev, ok := seenPods[got]; ok {
			t.Errorf("SliverName%v and %v both give %q", prev, in, got)
		}
		seenPods[got] = in
	}
}

func TestReservedSliverName(t *testing.T) {
	if got, want := ReservedSliverName("web", "n1", ""), SliverName("web", "n1"); got != want {
		t.Errorf("no variant: %q, want %q", got, want)
	}
	if got := ReservedSliverName("web", "n1", "0a1b2c3d4e"); got != "web-n1-0a1b2c3d4e" {
		t.Errorf("variant: %q", got)
	}
	long := ReservedSliverName("a-slice-with-a-rather-long-name", "planetlab-node-17.cs.example.edu", "0a1b2c3d4e")
	if len(long) > 63 || long == ReservedSliverName("a-slice-with-a-rather-long-name", "planetlab-node-17.cs.example.edu", "ffffffffff") {
		t.Errorf("long names: %q (len %d) must stay labels and differ per variant", long, len(long))
	}
}

// TestAuthorityNamespaceIsOneToOne holds the mapping from authority names
// to their namespaces one-to-one: the pair that collided before (a long
// name, and a short one written as the long one's shortened form: its
// prefix and a hash-looking last label) maps to two namespaces, and so do
// long names that share their kept prefix.
func TestAuthorityNamespaceIsOneToOne(t *testing.T) {
	long := "plc.japan.tokyo." + strings.Repeat("x", 40) + ".lab"
	short := func(ns string) string {
		// The authority whose plain namespace would be ns.
		return strings.ReplaceAll(strings.TrimPrefix(ns, "planetkube-auth-"), "-", ".")
	}
	// Under the earlier scheme, label() kept 54 characters and "-" + 8 hex.
	sum := sha256.Sum256([]byte("auth/" + long))
	old := ("planetkube-auth-" + strings.ReplaceAll(long, ".", "-"))[:54] + "-" + hex.EncodeToString(sum[:])[:8]
	crafted := short(old)
	if !ValidAuthority(crafted) {
		t.Fatalf("the crafted name %q is not an authority's name", crafted)
	}
	seen := map[string]string{}
	if forged := short(AuthorityNamespace(long)); ValidAuthority(forged) {
		t.Errorf("%q, an authority's name, would map to the shortened namespace of %q", forged, long)
	}
	for _, a := range []string{"plc", "plc.japan", long, crafted, long + "2", long + ".x"} {
		ns := AuthorityNamespace(a)
		checkLabel(t, "AuthorityNamespace("+a+")", ns)
		if !IsAuthorityNamespace(ns) {
			t.Errorf("%q is not named as an authority's namespace", ns)
		}
		if other, dup := seen[ns]; dup {
			t.Errorf("%q and %q both map to %q", other, a, ns)
		}
		seen[ns] = a
	}
	if got := AuthorityNamespace("plc.japan"); got != "planetkube-auth-plc-japan" {
		t.Errorf("AuthorityNamespace(plc.japan) = %q, want the plain form", got)
	}
	if got := AuthorityNamespace(long); !strings.Contains(got, "--") || len(got) != 63 {
		t.Errorf("AuthorityNamespace(long) = %q, want a 63-character shortened form with --", got)
	}
}

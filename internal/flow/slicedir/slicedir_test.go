package slicedir

import (
	"slices"
	"testing"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
)

func TestDirectorySplit(t *testing.T) {
	d := &Directory{Authority: "plc"}
	for _, tc := range []struct {
		in          string
		site, slice string
		ok          bool
	}{
		{"plc.princeton.codeen", "princeton", "codeen", true},
		{"plc.mit.a.b.c", "", "", false}, // authority plc.mit.a: not this one
		{"plc.mit.a-b", "mit", "a-b", true},
		{"ple.princeton.codeen", "", "", false},
		{"plc.princeton", "", "", false},
		{"plc..x", "", "", false},
		{"plc.x.", "", "", false},
		{"", "", "", false},
	} {
		site, slice, ok := d.split(tc.in)
		if site != tc.site || slice != tc.slice || ok != tc.ok {
			t.Errorf("split(%q) = %q, %q, %v; want %q, %q, %v", tc.in, site, slice, ok, tc.site, tc.slice, tc.ok)
		}
	}
}

func TestContacts(t *testing.T) {
	site := &planetv1.Site{Spec: planetv1.SiteSpec{
		PIs:   []planetv1.Subject{{Kind: planetv1.SubjectUser, Name: "llp@cs.princeton.edu"}, {Kind: planetv1.SubjectServiceAccount, Name: "robot", Namespace: "x"}},
		Techs: []planetv1.Subject{{Kind: planetv1.SubjectUser, Name: "tech@cs.princeton.edu"}, {Kind: planetv1.SubjectUser, Name: "llp@cs.princeton.edu"}, {Kind: planetv1.SubjectGroup, Name: "princeton-ops"}},
	}}
	got := contacts(site)
	want := []string{"llp@cs.princeton.edu", "tech@cs.princeton.edu", "princeton-ops"}
	if len(got) != len(want) {
		t.Fatalf("contacts = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("contacts = %q, want %q", got, want)
		}
	}
	wantTechs := []string{"tech@cs.princeton.edu", "llp@cs.princeton.edu", "princeton-ops"}
	if pis, techs := names(site.Spec.PIs), names(site.Spec.Techs); !slices.Equal(pis, want[:1]) || !slices.Equal(techs, wantTechs) {
		t.Errorf("PIs %q, techs %q; want %q and %q (each role's people, no service accounts)", pis, techs, want[:1], wantTechs)
	}
}

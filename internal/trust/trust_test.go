package trust

import (
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
)

func site(name string, state planetv1.SiteState, trusted ...string) planetv1.Site {
	return planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: planetv1.SiteSpec{State: state, TrustedAuthorities: trusted}}
}

func TestTrusts(t *testing.T) {
	cases := []struct {
		name      string
		site      planetv1.Site
		authority string
		want      bool
	}{
		{"default trusts the local authority", site("a", ""), "plc", true},
		{"default trusts the local authority's delegates", site("a", ""), "plc.japan", true},
		{"default does not trust a peer", site("a", ""), "ple", false},
		{"a prefix is not a delegate", site("a", ""), "plcx", false},
		{"listed peer", site("a", "", "ple"), "ple", true},
		{"listed peer's delegate", site("a", "", "ple"), "ple.fr", true},
		{"a list without the local authority drops it", site("a", "", "ple"), "plc", false},
		{"trusting a delegate does not trust its parent", site("a", "", "plc.japan"), "plc", false},
		{"disabled trusts no one", site("a", planetv1.SiteDisabled, "plc"), "plc", false},
		{"enabled with both", site("a", planetv1.SiteEnabled, "plc", "ple"), "ple", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Trusts(&tc.site, "plc", tc.authority); got != tc.want {
				t.Fatalf("Trusts = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFilter(t *testing.T) {
	sites := []planetv1.Site{site("princeton", ""), site("inria", "", "plc", "ple"), site("off", planetv1.SiteDisabled)}
	local := NewFilter(sites, "plc", "plc")
	foreign := NewFilter(sites, "plc", "ple")
	for _, tc := range []struct {
		f    Filter
		site string
		want bool
	}{
		{local, "princeton", true}, {local, "inria", true}, {local, "off", false}, {local, "nosite", true},
		{foreign, "princeton", false}, {foreign, "inria", true}, {foreign, "off", false}, {foreign, "nosite", false},
	} {
		if got := tc.f.Allows(tc.site); got != tc.want {
			t.Errorf("Allows(%s) = %v, want %v", tc.site, got, tc.want)
		}
	}
	if got := Trusting(sites, "plc", "ple"); !reflect.DeepEqual(got, []string{"inria"}) {
		t.Errorf("Trusting = %v", got)
	}
}

package trust

import (
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/ticket"
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
			if got := (Policy{Local: "plc"}).Trusts(&tc.site, tc.authority); got != tc.want {
				t.Fatalf("Trusts = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFilter(t *testing.T) {
	sites := []planetv1.Site{site("princeton", ""), site("inria", "", "plc", "ple"), site("off", planetv1.SiteDisabled)}
	p := Policy{Local: "plc"}
	local := p.NewFilter(sites, "plc")
	foreign := p.NewFilter(sites, "ple")
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
	if got := p.Trusting(sites, "ple"); !reflect.DeepEqual(got, []string{"inria"}) {
		t.Errorf("Trusting = %v", got)
	}
}

// An install's default trust applies to the sites that name no one, and
// only to them, always with the local authority.
func TestDefaultTrust(t *testing.T) {
	p := Policy{Local: "plc", Default: []string{"plc", "ple"}}
	only := Policy{Local: "plc", Default: []string{"ple"}}
	for _, tc := range []struct {
		p         Policy
		site      planetv1.Site
		authority string
		want      bool
	}{
		{p, site("a", ""), "ple.fr", true},
		{p, site("a", ""), "plc", true},
		{p, site("a", ""), "plj", false},
		{p, site("a", "", "plj"), "ple", false},
		{p, site("a", planetv1.SiteDisabled), "plc", false},
		{only, site("a", ""), "plc", true},
		{only, site("a", "", "ple"), "plc", false},
	} {
		if got := tc.p.Trusts(&tc.site, tc.authority); got != tc.want {
			t.Errorf("%+v Trusts(%s, %s) = %v, want %v", tc.p, tc.site.Name, tc.authority, got, tc.want)
		}
	}
	if err := p.CheckGrant([]planetv1.Site{site("a", "")}, "ple"); err != nil {
		t.Errorf("a default-trusted authority's grant refused: %v", err)
	}
	if err := (Policy{Local: "plc"}).CheckGrant([]planetv1.Site{site("a", "")}, "ple"); ticket.ReasonOf(err) != ticket.NotTrusted {
		t.Errorf("an untrusted authority's grant: %v", err)
	}
	if filter := only.NewFilter(nil, "plc"); !filter.Allows("nosite") {
		t.Error("a node of no Site refuses the local authority's slices")
	}
}

func TestCheckDefault(t *testing.T) {
	for list, ok := range map[string]bool{"": true, "plc": true, "plc,ple.fr": true, "PLC": false, "plc,plc": false, "plc,": false} {
		var l []string
		if list != "" {
			l = strings.Split(list, ",")
		}
		if err := CheckDefault(l); (err == nil) != ok {
			t.Errorf("CheckDefault(%q) = %v, want ok %v", list, err, ok)
		}
	}
}

// TestMayAllocate: trust alone decides, whatever the site's state, and a
// namespace with no Site trusts the local authority alone.
func TestMayAllocate(t *testing.T) {
	p := Policy{Local: "plc", Default: []string{"ple"}}
	disabled := site("mit", planetv1.SiteDisabled, "plc", "ple")
	unset := site("inria", planetv1.SiteEnabled)
	cases := []struct {
		name      string
		site      *planetv1.Site
		authority string
		want      bool
	}{
		{"a disabled site that trusts ple", &disabled, "ple", true},
		{"a disabled site, a delegate of ple", &disabled, "ple.fr", true},
		{"a disabled site that does not trust plx", &disabled, "plx", false},
		{"a site that names no one: the local authority and the default", &unset, "ple", true},
		{"no Site: the local authority", nil, "plc.japan", true},
		{"no Site: not another", nil, "ple", false},
	}
	for _, c := range cases {
		if got := p.MayAllocate(c.site, c.authority); got != c.want {
			t.Errorf("%s: MayAllocate(%s) = %v, want %v", c.name, c.authority, got, c.want)
		}
	}
	if disabled.Spec.State != planetv1.SiteDisabled {
		t.Error("MayAllocate changed the site it was given")
	}
}

package federation

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/ticket"
)

func slice(mut func(*planetv1.Slice)) *planetv1.Slice {
	s := &planetv1.Slice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "princeton", Name: "codeen"},
		Spec: planetv1.SliceSpec{
			Template: planetv1.SliverTemplate{Image: "busybox"},
			CPUShare: 1, State: planetv1.SliceActive, PodSecurity: planetv1.PodSecurityBaseline,
			Nodes: planetv1.SliceNodes{Authorities: []string{"ple", "plc", "plj", "ple"}},
		},
	}
	if mut != nil {
		mut(s)
	}
	return s
}

func TestPeers(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []string
	}{
		{"none", nil, nil},
		{"local left out, deduplicated, sorted", []string{"ple", "plc", "plj", "ple"}, []string{"ple", "plj"}},
		{"only local", []string{"plc"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Peers(slice(func(s *planetv1.Slice) { s.Spec.Nodes.Authorities = tc.in }), "plc")
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Peers = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestGrant(t *testing.T) {
	exp := time.Date(2026, 12, 16, 0, 0, 0, 0, time.UTC)
	base := slice(nil)
	g := Grant(base, "plc.princeton.codeen", exp)
	if g.Nodes.Authorities != nil || len(base.Spec.Nodes.Authorities) != 4 {
		t.Fatalf("the grant passes the authorities on, or the slice lost them: %v / %v", g.Nodes.Authorities, base.Spec.Nodes.Authorities)
	}
	if g.State != "" || g.ExpiresAt != exp.Unix() || g.Slice != "plc.princeton.codeen" {
		t.Fatalf("grant = %+v", g)
	}
	h := GrantHash("ple", g)
	for _, tc := range []struct {
		name    string
		mut     func(*planetv1.Slice)
		exp     time.Time
		peer    string
		changes bool
	}{
		{"same slice", nil, exp, "ple", false},
		{"other authorities listed", func(s *planetv1.Slice) { s.Spec.Nodes.Authorities = []string{"ple"} }, exp, "ple", false},
		{"renewed", nil, exp.Add(time.Hour), "ple", true},
		{"suspended", func(s *planetv1.Slice) { s.Spec.State = planetv1.SliceSuspended }, exp, "ple", true},
		{"new image", func(s *planetv1.Slice) { s.Spec.Template.Image = "nginx" }, exp, "ple", true},
		{"other peer", nil, exp, "plj", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := GrantHash(tc.peer, Grant(slice(tc.mut), "plc.princeton.codeen", tc.exp))
			if (got != h) != tc.changes {
				t.Fatalf("hash changed = %v, want %v", got != h, tc.changes)
			}
		})
	}
	if s := Grant(slice(func(s *planetv1.Slice) { s.Spec.State = planetv1.SliceSuspended }), "x", exp).State; s != planetv1.SliceSuspended {
		t.Fatalf("a suspended slice grants state %q", s)
	}
}

func TestClaimsCapLifetime(t *testing.T) {
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	g := ticket.SliverGrant{Slice: "plc.a.b", ExpiresAt: now.Add(20 * 7 * 24 * time.Hour).Unix()}
	c := Claims("ple", g, now, "j")
	if c.Expiry != now.Add(ticket.MaxLifetime).Unix() || c.Sliver.ExpiresAt != c.Expiry {
		t.Fatalf("expiry %d, grant %d; want both capped at %d", c.Expiry, c.Sliver.ExpiresAt, now.Add(ticket.MaxLifetime).Unix())
	}
	g.ExpiresAt = now.Add(time.Hour).Unix()
	if c := Claims("ple", g, now, "j"); c.Expiry != g.ExpiresAt || c.Audience != "ple" || c.IssuedAt != now.Unix() {
		t.Fatalf("claims = %+v", c)
	}
}

func TestNextPoll(t *testing.T) {
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	rnd := rand.New(rand.NewPCG(1, 2))
	lo, hi := time.Duration(1<<62), time.Duration(0)
	for range 5000 {
		d := NextPoll(now, 0, rnd).Sub(now)
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 600*time.Second || hi > 901*time.Second || hi < 880*time.Second || lo > 620*time.Second {
		t.Fatalf("default poll spread [%s, %s], want within [600s, 901s] and spread over it", lo, hi)
	}
	if d := NextPoll(now, 10*time.Second, rnd).Sub(now); d < 10*time.Second || d > 16*time.Second {
		t.Fatalf("10 s interval gave %s", d)
	}
}

func TestTicketName(t *testing.T) {
	a, b := TicketName("feed", "plc.princeton.codeen", "j1"), TicketName("feed", "plc.princeton.codeen", "j2")
	if a == b || len(a) != len("feed-")+20+1+8 || a[:26] != b[:26] {
		t.Fatalf("names %q %q: want one slice id, two jti suffixes", a, b)
	}
}

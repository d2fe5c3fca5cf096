package authority

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/testing/testenv"
	"github.com/planetkube/planetkube/internal/ticket"
)

// key returns a deterministic peer key as the peers file lists it.
func key(seed string) planetv1.AuthorityKey {
	pub := ed25519.NewKeyFromSeed([]byte(strings.Repeat(seed, ed25519.SeedSize))).Public().(ed25519.PublicKey)
	return planetv1.AuthorityKey{ID: ticket.KeyID(pub), PublicKey: ticket.EncodePublicKey(pub)}
}

func peersYAML(entries ...string) []byte { return []byte(strings.Join(entries, "\n")) }

func TestReadPeers(t *testing.T) {
	k := key("e")
	good := fmt.Sprintf("- name: ple\n  displayName: PlanetLab Europe\n  keys: [{id: %s, publicKey: %s}]", k.ID, k.PublicKey)
	for _, c := range []struct {
		name, yaml, err string
	}{
		{"a peer", good, ""},
		{"none", "[]", ""},
		{"not a list", "name: ple", "not a YAML list"},
		{"unknown field", good + "\n  feed: https://x", "not a YAML list"},
		{"bad name", fmt.Sprintf("- name: PLE\n  keys: [{id: %s, publicKey: %s}]", k.ID, k.PublicKey), "not an authority name"},
		{"itself", fmt.Sprintf("- name: plc\n  keys: [{id: %s, publicKey: %s}]", k.ID, k.PublicKey), "own authority"},
		{"twice", good + "\n" + good, "listed twice"},
		{"no key", "- name: ple\n  keys: []", "1 to 8 keys"},
		{"wrong id", fmt.Sprintf("- name: ple\n  keys: [{id: 0123456789abcdef, publicKey: %s}]", k.PublicKey), "whose id is its own"},
		{"not a key", "- name: ple\n  keys: [{id: 0123456789abcdef, publicKey: bm90IGEga2V5}]", "whose id is its own"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadPeers(peersYAML(c.yaml), "plc")
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("ReadPeers: %v, want %q", err, c.err)
			}
		})
	}
}

// PeerSync against a real API server: listed peers become Authorities,
// one dropped from the list is deleted, one made by hand is left alone.
func TestPeerSync(t *testing.T) {
	env := testenv.New(filepath.Join("..", ".."), testenv.WithoutWebhooks)
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest (run `make tools`): %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = planetv1.AddToScheme(scheme)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	byHand := &planetv1.Authority{}
	byHand.Name = "plj"
	byHand.Spec.Keys = []planetv1.AuthorityKey{key("j")}
	if err := c.Create(ctx, byHand); err != nil {
		t.Fatal(err)
	}

	ple, plk := Peer{Name: "ple", DisplayName: "PlanetLab Europe", Keys: []planetv1.AuthorityKey{key("e")}}, Peer{Name: "plk", Keys: []planetv1.AuthorityKey{key("k")}}
	// plj is listed too, with another key: the hand-made one is left alone.
	plj := Peer{Name: "plj", Keys: []planetv1.AuthorityKey{key("x")}}
	if err := (&PeerSync{Client: c, Peers: []Peer{ple, plk, plj}}).Sync(ctx); err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		list := &planetv1.AuthorityList{}
		if err := c.List(ctx, list); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range list.Items {
			if a.DeletionTimestamp.IsZero() {
				out = append(out, a.Name+"="+a.Spec.Keys[0].ID)
			}
		}
		return out
	}
	want := []string{"ple=" + key("e").ID, "plj=" + key("j").ID, "plk=" + key("k").ID}
	if got := names(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("after the first sync: %v, want %v", got, want)
	}
	got := &planetv1.Authority{}
	if err := c.Get(ctx, client.ObjectKey{Name: "plj"}, got); err != nil || got.Labels[LabelPeer] != "" {
		t.Fatalf("the hand-made plj was taken over: %v %v", got.Labels, err)
	}
	// plk dropped, ple's key rotated: plk goes, ple changes, plj stays.
	ple.Keys = []planetv1.AuthorityKey{key("f")}
	if err := (&PeerSync{Client: c, Peers: []Peer{ple}}).Sync(ctx); err != nil {
		t.Fatal(err)
	}
	want = []string{"ple=" + key("f").ID, "plj=" + key("j").ID}
	if got := names(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("after dropping plk: %v, want %v", got, want)
	}
	// Of reads one authority's keys as the keyring of them all has them.
	list := &planetv1.AuthorityList{}
	if err := c.List(ctx, list); err != nil {
		t.Fatal(err)
	}
	ring := Keyring(list.Items)
	for _, name := range []string{"ple", "plj", "plk", "nope"} {
		keys, err := Keys{Reader: c}.Of(ctx, name)
		if err != nil || fmt.Sprint(keys) != fmt.Sprint(ring[name]) {
			t.Errorf("Of(%s) = %v, %v; the keyring has %v", name, keys, err, ring[name])
		}
	}
	if keys, _ := (Keys{Reader: c}).Of(ctx, "ple"); len(keys) != 1 || keys[0].ID != key("f").ID {
		t.Errorf("Of(ple) = %v, want the rotated key %s", keys, key("f").ID)
	}
}

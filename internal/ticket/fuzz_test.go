package ticket

import (
	"testing"
	"time"
)

// FuzzVerify feeds untrusted tokens to the verifier: it must never panic,
// every refusal must carry a reason, and whatever verifies must be a
// well-formed grant addressed here and signed by a known key.
func FuzzVerify(f *testing.F) {
	chain := []string{}
	if d, err := plc.Delegate(japan.Authority, pub(japanKey), now.Add(-time.Hour), now.Add(48*time.Hour)); err == nil {
		chain = append(chain, d)
	}
	direct, _ := plc.Issue(sliverClaims("plc.princeton.codeen"))
	c := sliverClaims("plc.japan.utokyo.codeen")
	c.Chain = chain
	delegated, _ := japan.Issue(c)
	for _, seed := range []string{direct, delegated, chain[0], "", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", direct + "x"} {
		f.Add(seed)
	}
	v := verifier()
	f.Fuzz(func(t *testing.T, token string) {
		got, err := v.Verify(token, now)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("a refusal without a reason: %v", err)
			}
			return
		}
		if got.Audience != v.Audience || (got.Sliver == nil) == (got.Pool == nil) || got.Root != "plc" {
			t.Fatalf("verified a ticket it should not have: %+v", got.Claims)
		}
	})
}

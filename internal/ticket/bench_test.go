package ticket

import (
	"testing"
	"time"
)

// BenchmarkVerify verifies a ticket whose issuer is two delegations below
// the known root (three signatures). `make bench` compares it with bare
// ed25519.Verify in test/bench.
func BenchmarkVerify(b *testing.B) {
	d1, _ := plc.Delegate(japan.Authority, pub(japanKey), now.Add(-time.Hour), now.Add(48*time.Hour))
	d2, _ := japan.Delegate(tokyo.Authority, pub(tokyoKey), now.Add(-time.Hour), now.Add(36*time.Hour))
	c := sliverClaims("plc.japan.tokyo.todai.codeen")
	c.Chain = []string{d1, d2}
	tok, err := tokyo.Issue(c)
	if err != nil {
		b.Fatal(err)
	}
	v := verifier()
	for b.Loop() {
		if _, err := v.Verify(tok, now); err != nil {
			b.Fatal(err)
		}
	}
}

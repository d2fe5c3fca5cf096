package ticket

import (
	"bytes"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
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

// FuzzParseAgreesWithGoJose checks this package's JWS parser against
// go-jose's (the library that signs the tokens), given the same EdDSA
// allow-list: every token parse accepts, go-jose accepts too, with the same
// kid, typ, payload and signature. parse may refuse more (a crit header, a
// missing kid or typ, a signature of the wrong size), never less.
func FuzzParseAgreesWithGoJose(f *testing.F) {
	direct, _ := plc.Issue(sliverClaims("plc.princeton.codeen"))
	d, _ := plc.Delegate(japan.Authority, pub(japanKey), now.Add(-time.Hour), now.Add(48*time.Hour))
	for _, seed := range []string{direct, d, "", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", direct + "x",
		// {"alg":"EdDSA","ALG":"none","typ":"planetkube-ticket+jwt","kid":"k"}: exact member names only.
		"eyJhbGciOiJFZERTQSIsIkFMRyI6Im5vbmUiLCJ0eXAiOiJwbGFuZXRrdWJlLXRpY2tldCtqd3QiLCJraWQiOiJrIn0.e30." + strings.Repeat("A", 86)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		for _, typ := range []string{TypeTicket, TypeDelegation} {
			s, kid, payload, err := parse(token, typ)
			if err != nil {
				continue
			}
			jws, jerr := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.EdDSA})
			if jerr != nil {
				t.Fatalf("parse accepted a token go-jose refuses (%v): %q", jerr, token)
			}
			h := jws.Signatures[0].Protected
			gotTyp, _ := h.ExtraHeaders[jose.HeaderType].(string)
			switch {
			case len(jws.Signatures) != 1 || h.Algorithm != string(jose.EdDSA):
				t.Fatalf("go-jose reads %d signatures, alg %q", len(jws.Signatures), h.Algorithm)
			case h.KeyID != kid || gotTyp != typ:
				t.Fatalf("kid/typ: parse %q/%q, go-jose %q/%q", kid, typ, h.KeyID, gotTyp)
			case !bytes.Equal(jws.UnsafePayloadWithoutVerification(), payload):
				t.Fatalf("payload: parse %q, go-jose %q", payload, jws.UnsafePayloadWithoutVerification())
			case !bytes.Equal(jws.Signatures[0].Signature, s.signature):
				t.Fatal("the signatures differ")
			case string(s.raw) != token || !strings.HasPrefix(token, string(s.input)+"."):
				t.Fatal("the signing input is not the token's first two parts")
			}
		}
	})
}

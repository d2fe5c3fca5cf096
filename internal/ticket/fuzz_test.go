package ticket

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejson "github.com/go-jose/go-jose/v4/json"
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
	// Duplicate members and case variants, in the header and the claims:
	// each verifies if read as encoding/json reads it (TestStrictJSON).
	for _, seed := range strictSeeds(f) {
		f.Add(seed.token)
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
// header (every member, as go-jose's own JSON reader reads it), kid, typ,
// payload and signature. parse may refuse more (a crit header, a missing
// kid or typ, a signature of the wrong size, a case variant of a header
// name), never less.
func FuzzParseAgreesWithGoJose(f *testing.F) {
	for _, seed := range goJoseSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(agreesWithGoJose)
}

// FuzzHeaderAgreesWithGoJose is FuzzParseAgreesWithGoJose with the fuzzer
// writing the JSON of the header and the payload rather than their base64,
// and a signature of the right size: it reaches the header's JSON.
func FuzzHeaderAgreesWithGoJose(f *testing.F) {
	for _, seed := range goJoseSeeds(f) {
		if h, p, ok := jsonParts(seed); ok {
			f.Add(h, p)
		}
	}
	f.Fuzz(func(t *testing.T, header, payload string) {
		enc := base64.RawURLEncoding
		agreesWithGoJose(t, enc.EncodeToString([]byte(header))+"."+enc.EncodeToString([]byte(payload))+"."+enc.EncodeToString(make([]byte, 64)))
	})
}

// FuzzClaimsAgree signs claims' JSON as plc: whatever Verify accepts,
// encoding/json and go-jose's JSON reader read the same claims from it.
func FuzzClaimsAgree(f *testing.F) {
	for _, seed := range strictSeeds(f) {
		if _, p, ok := jsonParts(seed.token); ok {
			f.Add(p)
		}
	}
	f.Add(ticketJSON(f))
	f.Add(poolJSON(f))
	v := verifier()
	f.Fuzz(func(t *testing.T, payload string) {
		got, err := v.Verify(signRaw(plcKey, header(TypeTicket, plc.KeyID, ""), payload), now)
		if err != nil {
			return
		}
		var std, gj Claims
		if err := json.Unmarshal([]byte(payload), &std); err != nil || !reflect.DeepEqual(std, got.Claims) {
			t.Fatalf("encoding/json reads %+v (%v), Verify %+v", std, err, got.Claims)
		}
		if err := josejson.Unmarshal([]byte(payload), &gj); err != nil || !reflect.DeepEqual(gj, got.Claims) {
			t.Fatalf("go-jose's JSON reads %+v (%v), Verify %+v", gj, err, got.Claims)
		}
	})
}

// jsonParts returns the header's and the payload's JSON of a compact JWS.
func jsonParts(token string) (header, payload string, ok bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", "", false
	}
	h, herr := base64.RawURLEncoding.DecodeString(parts[0])
	p, perr := base64.RawURLEncoding.DecodeString(parts[1])
	return string(h), string(p), herr == nil && perr == nil
}

// goJoseSeeds are FuzzParseAgreesWithGoJose's seeds: good tokens, broken
// ones, and duplicate and case-variant members in the header and the
// claims.
func goJoseSeeds(t testing.TB) []string {
	direct, _ := plc.Issue(sliverClaims("plc.princeton.codeen"))
	d, _ := plc.Delegate(japan.Authority, pub(japanKey), now.Add(-time.Hour), now.Add(48*time.Hour))
	seeds := []string{direct, d, "", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", direct + "x",
		// {"alg":"EdDSA","ALG":"none","typ":"planetkube-ticket+jwt","kid":"k"}: a case variant.
		"eyJhbGciOiJFZERTQSIsIkFMRyI6Im5vbmUiLCJ0eXAiOiJwbGFuZXRrdWJlLXRpY2tldCtqd3QiLCJraWQiOiJrIn0.e30." + strings.Repeat("A", 86),
		// Unknown members that differ only in case, and nested: allowed.
		signRaw(plcKey, header(TypeTicket, plc.KeyID, `,"x":{"a":1,"A":[{"b":2}]},"X":null`), "{}"),
	}
	for _, s := range strictSeeds(t) {
		seeds = append(seeds, s.token)
	}
	return seeds
}

// agreesWithGoJose is FuzzParseAgreesWithGoJose's check of one token.
func agreesWithGoJose(t *testing.T, token string) {
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
		// The whole header, member by member, as go-jose's JSON reader
		// (which refuses duplicate members too) reads it.
		head, _ := base64.RawURLEncoding.DecodeString(token[:strings.IndexByte(token, '.')])
		ours, err := decodeHeader(head)
		var theirs map[string]any
		if jerr := josejson.Unmarshal(head, &theirs); err != nil || jerr != nil || !reflect.DeepEqual(ours, theirs) {
			t.Fatalf("header: parse reads %v (%v), go-jose's JSON %v (%v)", ours, err, theirs, jerr)
		}
	}
}

// TestSeedsAgreeWithGoJose runs the fuzz tests' seeds through both parsers
// on every test run: where parse accepts, go-jose reads the same; the
// duplicate and case-variant seeds are refused by parse or by Verify, and
// go-jose refuses those with a duplicate header member too.
func TestSeedsAgreeWithGoJose(t *testing.T) {
	for _, seed := range goJoseSeeds(t) {
		agreesWithGoJose(t, seed)
	}
	for _, seed := range strictSeeds(t) {
		if _, err := verifier().Verify(seed.token, now); ReasonOf(err) != Malformed {
			t.Errorf("%s: Verify %v, want Malformed", seed.name, err)
		}
		_, _, _, err := parse(seed.token, TypeTicket)
		_, jerr := jose.ParseSignedCompact(seed.token, []jose.SignatureAlgorithm{jose.EdDSA})
		switch {
		case strings.HasPrefix(seed.name, "header:") && err == nil:
			t.Errorf("%s: parse accepted it", seed.name)
		case strings.Contains(seed.name, "twice") && strings.HasPrefix(seed.name, "header:") && jerr == nil:
			t.Errorf("%s: go-jose accepted it", seed.name)
		}
	}
}

package ticket

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// signRaw builds a compact JWS from header and payload JSON exactly as
// given, signed by k: the signature is valid whatever the JSON says.
func signRaw(k ed25519.PrivateKey, header, payload string) string {
	in := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	return in + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(k, []byte(in)))
}

// header returns a JWS header's JSON with alg EdDSA, typ and kid, and
// extra members (raw JSON, each with its leading comma) after them.
func header(typ, kid, extra string) string {
	return fmt.Sprintf(`{"alg":"EdDSA","typ":%q,"kid":%q%s}`, typ, kid, extra)
}

// ticketJSON is the JSON of a good ticket of plc's for ple.
func ticketJSON(t testing.TB) string {
	c := sliverClaims("plc.princeton.codeen")
	c.Issuer = "plc"
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// poolJSON is the JSON of a good pool ticket of plc's for ple.
func poolJSON(t testing.TB) string {
	c := sliverClaims("x")
	c.Issuer = "plc"
	c.Sliver, c.Pool = nil, &PoolGrant{Pool: "princeton/p", PerNode: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}, Slice: "plc.a.b"}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// edit replaces old, which must be in s once, with new.
func edit(t testing.TB, s, old, new string) string {
	t.Helper()
	if strings.Count(s, old) != 1 {
		t.Fatalf("%q is not once in %s", old, s)
	}
	return strings.Replace(s, old, new, 1)
}

// strictSeeds are hand-signed tokens, valid but for a duplicate member or
// a member named like a known one in another case, that encoding/json would
// read as a good ticket of plc's for ple (the fuzz tests start from them
// too). Every one is refused as Malformed, its message naming the member.
func strictSeeds(t testing.TB) []struct{ name, token, member string } {
	body, pool := ticketJSON(t), poolJSON(t)
	tk := func(extra string) string { return header(TypeTicket, plc.KeyID, extra) }
	return []struct{ name, token, member string }{
		// The header.
		{"header: alg twice, none first", signRaw(plcKey, `{"alg":"none","alg":"EdDSA","typ":"`+TypeTicket+`","kid":"`+plc.KeyID+`"}`, body), "alg"},
		{"header: alg twice, EdDSA first", signRaw(plcKey, tk(`,"alg":"none"`), body), "alg"},
		{"header: kid twice", signRaw(plcKey, `{"alg":"EdDSA","typ":"`+TypeTicket+`","kid":"other","kid":"`+plc.KeyID+`"}`, body), "kid"},
		{"header: typ twice", signRaw(plcKey, `{"alg":"EdDSA","typ":"`+TypeDelegation+`","typ":"`+TypeTicket+`","kid":"`+plc.KeyID+`"}`, body), "typ"},
		{"header: an unknown member twice", signRaw(plcKey, tk(`,"x":1,"x":2`), body), "x"},
		{"header: a duplicate inside a member", signRaw(plcKey, tk(`,"x":{"a":1,"a":2}`), body), "a"},
		{"header: an escaped duplicate", signRaw(plcKey, tk(`,"k\u0069d":"other"`), body), "kid"},
		{"header: ALG beside alg", signRaw(plcKey, tk(`,"ALG":"none"`), body), "ALG"},
		{"header: Kid beside kid", signRaw(plcKey, tk(`,"Kid":"other"`), body), "Kid"},
		{"header: CRIT", signRaw(plcKey, tk(`,"CRIT":["exp"]`), body), "CRIT"},

		// The claims.
		{"claims: aud twice", signRaw(plcKey, tk(""), edit(t, body, `"aud":"ple"`, `"aud":"plc","aud":"ple"`)), "aud"},
		{"claims: AUD beside aud", signRaw(plcKey, tk(""), edit(t, body, `"aud":"ple"`, `"aud":"plc","AUD":"ple"`)), "AUD"},
		{"claims: Aud alone", signRaw(plcKey, tk(""), edit(t, body, `"aud":"ple"`, `"Aud":"ple"`)), "Aud"},
		{"claims: iss with a long s (ſ)", signRaw(plcKey, tk(""), edit(t, body, `"iss":"plc"`, `"iss":"plc","iſs":"ple"`)), "iſs"},
		{"claims: exp with an underscore", signRaw(plcKey, tk(""), edit(t, body, `"jti"`, `"e_xp":1,"jti"`)), "e_xp"},
		{"claims: nested image twice", signRaw(plcKey, tk(""), edit(t, body, `"image":"busybox"`, `"image":"evil","image":"busybox"`)), "image"},
		{"claims: nested Image", signRaw(plcKey, tk(""), edit(t, body, `"image":"busybox"`, `"image":"busybox","Image":"evil"`)), "Image"},
		{"claims: sliver twice", signRaw(plcKey, tk(""), edit(t, body, `"sliver":`, `"sliver":{},"sliver":`)), "sliver"},
		{"claims: a duplicate in a slice of structs", signRaw(plcKey, tk(""), edit(t, body, `"cpuShare":2`, `"cpuShare":2,"users":[{"name":"a","name":"b"}]`)), "name"},
		{"claims: an unknown member twice", signRaw(plcKey, tk(""), edit(t, body, `"jti"`, `"x":1,"x":2,"jti"`)), "x"},
		{"claims: a duplicate inside an unknown member", signRaw(plcKey, tk(""), edit(t, body, `"jti"`, `"x":[{"y":1,"y":2}],"jti"`)), "y"},
		{"claims: a duplicate in a resource map", signRaw(plcKey, tk(""), edit(t, pool, `"perNode":{"cpu":"1"}`, `"perNode":{"cpu":"1","cpu":"100"}`)), "cpu"},
	}
}

func TestStrictJSON(t *testing.T) {
	v := verifier()
	if _, err := v.Verify(signRaw(plcKey, header(TypeTicket, plc.KeyID, ""), ticketJSON(t)), now); err != nil {
		t.Fatalf("a good hand-signed ticket: %v", err)
	}
	if _, err := v.Verify(signRaw(plcKey, header(TypeTicket, plc.KeyID, `,"cty":"x","x":{"a":1,"A":2}`), poolJSON(t)), now); err != nil {
		t.Fatalf("a good pool ticket with unknown header members: %v", err)
	}
	for _, tc := range strictSeeds(t) {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(tc.token, now)
			if ReasonOf(err) != Malformed || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.member)) {
				t.Fatalf("got %v, want Malformed naming %q", err, tc.member)
			}
		})
	}
}

// TestStrictDelegation checks the delegations of a chain: a duplicate or a
// case variant in one is refused (BadDelegation, as every refused link is,
// its message naming the member), and InspectDelegation refuses it as
// Malformed.
func TestStrictDelegation(t *testing.T) {
	d := DelegationClaims{Issuer: "plc", Subject: "plc.japan", Key: EncodePublicKey(pub(japanKey)), KeyID: japan.KeyID,
		IssuedAt: now.Add(-time.Hour).Unix(), Expiry: now.Add(48 * time.Hour).Unix()}
	b, _ := json.Marshal(d)
	good := string(b)
	dh := header(TypeDelegation, plc.KeyID, "")
	keyMember := `"key":"` + d.Key + `"`
	for _, tc := range []struct{ name, link, member string }{
		{"good", signRaw(plcKey, dh, good), ""},
		{"key twice", signRaw(plcKey, dh, edit(t, good, keyMember, `"key":"`+EncodePublicKey(pub(strangeKey))+`",`+keyMember)), "key"},
		{"sub twice", signRaw(plcKey, dh, edit(t, good, `"sub":"plc.japan"`, `"sub":"plc.korea","sub":"plc.japan"`)), "sub"},
		{"Sub beside sub", signRaw(plcKey, dh, edit(t, good, `"sub":"plc.japan"`, `"sub":"plc.japan","Sub":"plc.korea"`)), "Sub"},
		{"EXP", signRaw(plcKey, dh, edit(t, good, `"iat"`, `"EXP":1,"iat"`)), "EXP"},
		{"header: kid twice", signRaw(plcKey, `{"alg":"EdDSA","typ":"`+TypeDelegation+`","kid":"x","kid":"`+plc.KeyID+`"}`, good), "kid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := sliverClaims("plc.japan.utokyo.codeen")
			c.Chain = []string{tc.link}
			_, err := verifier().Verify(mustIssue(t, japan, c), now)
			_, ierr := InspectDelegation(tc.link)
			if tc.member == "" {
				if err != nil || ierr != nil {
					t.Fatalf("a good delegation: Verify %v, InspectDelegation %v", err, ierr)
				}
				return
			}
			quoted := fmt.Sprintf("%q", tc.member)
			if ReasonOf(err) != BadDelegation || !strings.Contains(err.Error(), quoted) {
				t.Fatalf("Verify: got %v, want BadDelegation naming %s", err, quoted)
			}
			if ReasonOf(ierr) != Malformed || !strings.Contains(ierr.Error(), quoted) {
				t.Fatalf("InspectDelegation: got %v, want Malformed naming %s", ierr, quoted)
			}
		})
	}
}

// TestDecodeStrict checks the exported decoder that the federation feed
// uses for its payloads.
func TestDecodeStrict(t *testing.T) {
	type inner struct {
		N int `json:"n"`
	}
	type msg struct {
		Issuer string           `json:"iss"`
		Items  []inner          `json:"items"`
		Map    map[string]inner `json:"map"`
		Any    any              `json:"any"`
	}
	for _, tc := range []struct {
		in, err string // err: "" when it decodes, else a part of the error
	}{
		{`{"iss":"plc","items":[{"n":1}],"map":{"a":{"n":1},"A":{"n":2}},"any":{"x":1}}`, ""},
		{` {"iss":"plc"} `, ""},
		{`{"iss":"plc","iss":"ple"}`, `"iss" appears twice`},
		{`{"ISS":"ple"}`, `"ISS"`},
		{`{"items":[{"n":1,"N":2}]}`, `"N" in items[0]`},
		{`{"map":{"a":{"n":1},"a":{"n":2}}}`, `"a" appears twice in map`},
		{`{"any":{"x":{"y":1,"y":2}}}`, `"y" appears twice in any.x`},
		{`{"iss":"plc"} {}`, "after"},
		{`{"iss":"plc"`, "not JSON"},
		{`null`, "not a JSON object"},
		{`[{}]`, "not a JSON object"},
		{strings.Repeat(`{"a":`, maxJSONDepth+2) + "1" + strings.Repeat("}", maxJSONDepth+2), "deep"},
	} {
		var m msg
		err := DecodeStrict([]byte(tc.in), &m)
		switch {
		case tc.err == "" && (err != nil || m.Issuer != "plc"):
			t.Errorf("DecodeStrict(%.40s): %v, %+v", tc.in, err, m)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("DecodeStrict(%.40s): %v, want an error with %q", tc.in, err, tc.err)
		}
	}
	if err := DecodeStrict([]byte(`{}`), msg{}); err == nil {
		t.Error("DecodeStrict into a non-pointer")
	}
}

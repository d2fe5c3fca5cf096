package ticket

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
)

var now = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// key returns a deterministic Ed25519 key for a test authority.
func key(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed([]byte(strings.Repeat(string(rune('a'+seed)), ed25519.SeedSize)))
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

var (
	plcKey     = key(0)
	japanKey   = key(1)
	tokyoKey   = key(2)
	strangeKey = key(3)
	plc        = NewSigner("plc", plcKey)
	japan      = NewSigner("plc.japan", japanKey)
	tokyo      = NewSigner("plc.japan.tokyo", tokyoKey)
)

// verifier knows plc only, addressed as ple.
func verifier() *Verifier {
	return &Verifier{Audience: "ple", Keys: Keyring{"plc": {{ID: plc.KeyID, Public: pub(plcKey)}}}}
}

func sliverClaims(slice string) Claims {
	return Claims{
		Audience: "ple", IssuedAt: now.Add(-time.Hour).Unix(), Expiry: now.Add(24 * time.Hour).Unix(), ID: "t-1",
		Sliver: &SliverGrant{Slice: slice, Template: planetv1.SliverTemplate{Image: "busybox"}, CPUShare: 2},
	}
}

func mustIssue(t *testing.T, s Signer, c Claims) string {
	t.Helper()
	tok, err := s.Issue(c)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return tok
}

func mustDelegate(t *testing.T, parent Signer, child Signer, exp time.Time) string {
	t.Helper()
	d, err := parent.Delegate(child.Authority, pub(child.Key), now.Add(-2*time.Hour), exp)
	if err != nil {
		t.Fatalf("Delegate: %v", err)
	}
	return d
}

// handDelegate signs a delegation from parent to child with none of
// Delegate's checks (a child that is not one label under parent).
func handDelegate(t *testing.T, parent, child Signer) string {
	t.Helper()
	d, err := parent.sign(TypeDelegation, DelegationClaims{
		Issuer: parent.Authority, Subject: child.Authority, Key: EncodePublicKey(pub(child.Key)), KeyID: child.KeyID,
		IssuedAt: now.Add(-2 * time.Hour).Unix(), Expiry: now.Add(48 * time.Hour).Unix(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// raw builds a compact JWS by hand, signed (or not) as given.
func raw(header, payload any, sign func([]byte) []byte) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	in := enc(header) + "." + enc(payload)
	return in + "." + base64.RawURLEncoding.EncodeToString(sign([]byte(in)))
}

func TestVerify(t *testing.T) {
	inDay := now.Add(24 * time.Hour)
	chain1 := []string{mustDelegate(t, plc, japan, now.Add(48*time.Hour))}
	chain2 := []string{chain1[0], mustDelegate(t, japan, tokyo, now.Add(36*time.Hour))}

	withChain := func(c Claims, chain []string) Claims { c.Chain = chain; return c }
	tamper := func(tok string) string {
		parts := strings.Split(tok, ".")
		body, _ := base64.RawURLEncoding.DecodeString(parts[1])
		body = []byte(strings.Replace(string(body), `"cpuShare":2`, `"cpuShare":100`, 1))
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString(body) + "." + parts[2]
	}
	payload := sliverClaims("plc.princeton.codeen")
	payload.Issuer = "plc"

	cases := []struct {
		name  string
		token func() string
		want  Reason
		root  string
	}{
		{"direct", func() string { return mustIssue(t, plc, sliverClaims("plc.princeton.codeen")) }, "", "plc"},
		{"root grants a delegate's slice", func() string { return mustIssue(t, plc, sliverClaims("plc.japan.utokyo.codeen")) }, "", "plc"},
		{"delegated, chain of 1", func() string {
			return mustIssue(t, japan, withChain(sliverClaims("plc.japan.utokyo.codeen"), chain1))
		}, "", "plc"},
		{"delegated, chain of 2", func() string {
			return mustIssue(t, tokyo, withChain(sliverClaims("plc.japan.tokyo.todai.codeen"), chain2))
		}, "", "plc"},
		{"expired within the skew", func() string {
			c := sliverClaims("plc.princeton.codeen")
			c.IssuedAt, c.Expiry = now.Add(-2*time.Hour).Unix(), now.Add(-30*time.Second).Unix()
			return mustIssue(t, plc, c)
		}, "", "plc"},

		// Malformed.
		{"oversized", func() string { return strings.Repeat("a", MaxTokenBytes+1) }, Malformed, ""},
		{"garbage", func() string { return "not.a.token" }, Malformed, ""},
		{"two parts", func() string { return "eyJhbGciOiJFZERTQSJ9.e30" }, Malformed, ""},
		{"alg none", func() string {
			return raw(map[string]string{"alg": "none", "typ": TypeTicket, "kid": plc.KeyID}, payload, func([]byte) []byte { return nil })
		}, Malformed, ""},
		{"alg HS256 keyed with the public key (algorithm confusion)", func() string {
			return raw(map[string]string{"alg": "HS256", "typ": TypeTicket, "kid": plc.KeyID}, payload, func(in []byte) []byte {
				m := hmac.New(sha256.New, pub(plcKey))
				m.Write(in)
				return m.Sum(nil)
			})
		}, Malformed, ""},
		{"no typ", func() string {
			return raw(map[string]string{"alg": "EdDSA", "kid": plc.KeyID}, payload, func(in []byte) []byte { return ed25519.Sign(plcKey, in) })
		}, Malformed, ""},
		{"a delegation presented as a ticket", func() string { return chain1[0] }, Malformed, ""},
		{"a critical header", func() string {
			return raw(map[string]any{"alg": "EdDSA", "typ": TypeTicket, "kid": plc.KeyID, "crit": []string{"exp"}, "exp": 1}, payload, func(in []byte) []byte { return ed25519.Sign(plcKey, in) })
		}, Malformed, ""},
		{"no kid", func() string {
			return raw(map[string]string{"alg": "EdDSA", "typ": TypeTicket}, payload, func(in []byte) []byte { return ed25519.Sign(plcKey, in) })
		}, Malformed, ""},
		{"payload not JSON", func() string {
			h, _ := json.Marshal(map[string]string{"alg": "EdDSA", "typ": TypeTicket, "kid": plc.KeyID})
			in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString([]byte("[1,2"))
			return in + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(plcKey, []byte(in)))
		}, Malformed, ""},
		{"no jti", func() string {
			c := payload
			c.ID = ""
			return raw(map[string]string{"alg": "EdDSA", "typ": TypeTicket, "kid": plc.KeyID}, c, func(in []byte) []byte { return ed25519.Sign(plcKey, in) })
		}, Malformed, ""},

		// Signatures.
		{"signed by another key under plc's kid", func() string {
			return mustIssue(t, Signer{Authority: "plc", KeyID: plc.KeyID, Key: strangeKey}, sliverClaims("plc.princeton.codeen"))
		}, BadSignature, ""},
		{"payload changed after signing", func() string { return tamper(mustIssue(t, plc, sliverClaims("plc.princeton.codeen"))) }, BadSignature, ""},
		{"a key plc does not have", func() string {
			return mustIssue(t, NewSigner("plc", strangeKey), sliverClaims("plc.princeton.codeen"))
		}, BadSignature, ""},

		// Issuers and delegations.
		{"unknown issuer", func() string { return mustIssue(t, NewSigner("ple", strangeKey), sliverClaims("ple.inria.codeen")) }, UnknownIssuer, ""},
		{"chain from an unknown root", func() string {
			other := NewSigner("ple", strangeKey)
			child := NewSigner("ple.fr", japanKey)
			return mustIssue(t, child, withChain(sliverClaims("ple.fr.inria.codeen"), []string{mustDelegate(t, other, child, inDay)}))
		}, UnknownIssuer, ""},
		{"delegate without a chain", func() string { return mustIssue(t, japan, sliverClaims("plc.japan.utokyo.codeen")) }, UnknownIssuer, ""},
		{"delegation signed by a stranger under plc's kid", func() string {
			forged := mustDelegate(t, Signer{Authority: "plc", KeyID: plc.KeyID, Key: strangeKey}, japan, inDay)
			return mustIssue(t, japan, withChain(sliverClaims("plc.japan.utokyo.codeen"), []string{forged}))
		}, BadDelegation, ""},
		{"delegation expired", func() string {
			d := mustDelegate(t, plc, japan, now.Add(-time.Hour))
			return mustIssue(t, japan, withChain(sliverClaims("plc.japan.utokyo.codeen"), []string{d}))
		}, BadDelegation, ""},
		{"link outlives its parent", func() string {
			long := []string{chain1[0], mustDelegate(t, japan, tokyo, now.Add(72*time.Hour))}
			return mustIssue(t, tokyo, withChain(sliverClaims("plc.japan.tokyo.todai.codeen"), long))
		}, BadDelegation, ""},
		{"chain ends at another authority", func() string {
			return mustIssue(t, tokyo, withChain(sliverClaims("plc.japan.tokyo.todai.codeen"), chain1))
		}, BadDelegation, ""},
		{"ticket signed with a key the delegation does not give", func() string {
			return mustIssue(t, NewSigner("plc.japan", strangeKey), withChain(sliverClaims("plc.japan.utokyo.codeen"), chain1))
		}, BadDelegation, ""},
		{"ticket outlives its delegation", func() string {
			c := withChain(sliverClaims("plc.japan.utokyo.codeen"), chain1)
			c.Expiry = now.Add(72 * time.Hour).Unix()
			return mustIssue(t, japan, c)
		}, BadDelegation, ""},
		{"delegation to a grandchild (plc → plc.japan.tokyo)", func() string {
			return mustIssue(t, tokyo, withChain(sliverClaims("plc.japan.tokyo.todai.codeen"), []string{handDelegate(t, plc, tokyo)}))
		}, BadDelegation, ""},
		{"delegation outside the issuer's name (plc → ple.x)", func() string {
			other := NewSigner("ple.x", tokyoKey)
			return mustIssue(t, other, withChain(sliverClaims("ple.x.inria.codeen"), []string{handDelegate(t, plc, other)}))
		}, BadDelegation, ""},
		{"ticket of another authority signed with the chain's key", func() string {
			// plc.korea is not the chain's last subject (plc.japan), but
			// its ticket is signed with plc.japan's key, under its kid.
			return mustIssue(t, NewSigner("plc.korea", japanKey), withChain(sliverClaims("plc.korea.seoul.codeen"), chain1))
		}, BadDelegation, ""},
		{"links out of order", func() string {
			return mustIssue(t, tokyo, withChain(sliverClaims("plc.japan.tokyo.todai.codeen"), []string{chain2[1], chain2[0]}))
		}, UnknownIssuer, ""},

		// Scope, audience, time, grant.
		{"delegate grants outside its prefix", func() string {
			c := withChain(sliverClaims("plc.princeton.codeen"), chain1)
			c.Issuer = japan.Authority
			tok, err := japan.sign(TypeTicket, c) // Issue refuses it
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}, OutOfScope, ""},
		{"wrong audience", func() string {
			c := sliverClaims("plc.princeton.codeen")
			c.Audience = "plj"
			return mustIssue(t, plc, c)
		}, WrongAudience, ""},
		{"not yet valid", func() string {
			c := sliverClaims("plc.princeton.codeen")
			c.NotBefore = now.Add(time.Hour).Unix()
			return mustIssue(t, plc, c)
		}, NotYetValid, ""},
		{"issued in the future", func() string {
			c := sliverClaims("plc.princeton.codeen")
			c.IssuedAt = now.Add(time.Hour).Unix()
			return mustIssue(t, plc, c)
		}, NotYetValid, ""},
		{"expired", func() string {
			c := sliverClaims("plc.princeton.codeen")
			c.IssuedAt, c.Expiry = now.Add(-3*time.Hour).Unix(), now.Add(-2*time.Hour).Unix()
			return mustIssue(t, plc, c)
		}, Expired, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := verifier().Verify(tc.token(), now)
			if ReasonOf(err) != tc.want {
				t.Fatalf("reason %q (%v), want %q", ReasonOf(err), err, tc.want)
			}
			if tc.want == "" && got.Root != tc.root {
				t.Fatalf("root %q, want %q", got.Root, tc.root)
			}
			if err != nil && strings.Contains(err.Error(), "PRIVATE") {
				t.Fatalf("an error quotes a key: %v", err)
			}
		})
	}
}

// TestRefusedAtIssue checks what Issue refuses and what a verifier refuses
// the same way when a token is made by hand.
func TestRefusedAtIssue(t *testing.T) {
	pool := func(p PoolGrant) Claims {
		c := sliverClaims("x")
		c.Sliver, c.Pool = nil, &p
		return c
	}
	gpu := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
	cases := []struct {
		name   string
		claims Claims
		want   Reason
	}{
		{"no grant", func() Claims { c := sliverClaims("x"); c.Sliver = nil; return c }(), InvalidGrant},
		{"two grants", func() Claims {
			c := sliverClaims("plc.a.b")
			c.Pool = &PoolGrant{Pool: "princeton/p", PerNode: gpu, Slice: "plc.a.b"}
			return c
		}(), InvalidGrant},
		{"slice not a full name", sliverClaims("codeen"), InvalidGrant},
		{"slice of another authority", sliverClaims("ple.inria.codeen"), OutOfScope},
		{"slice of a prefix-sharing authority", sliverClaims("plcx.inria.codeen"), OutOfScope},
		{"no image", func() Claims { c := sliverClaims("plc.a.b"); c.Sliver.Template.Image = ""; return c }(), InvalidGrant},
		{"cpu share 101", func() Claims { c := sliverClaims("plc.a.b"); c.Sliver.CPUShare = 101; return c }(), InvalidGrant},
		{"slice outlives the ticket", func() Claims {
			c := sliverClaims("plc.a.b")
			c.Sliver.ExpiresAt = c.Expiry + 1
			return c
		}(), InvalidGrant},
		{"lifetime over 8 weeks", func() Claims {
			c := sliverClaims("plc.a.b")
			c.Expiry = c.IssuedAt + int64(MaxLifetime/time.Second) + 1
			return c
		}(), InvalidGrant},
		{"pool with no amounts", pool(PoolGrant{Pool: "princeton/p", Slice: "plc.a.b"}), InvalidGrant},
		{"pool ref not namespace/name", pool(PoolGrant{Pool: "p", PerNode: gpu, Slice: "plc.a.b"}), InvalidGrant},
		{"pool for another authority's slice", pool(PoolGrant{Pool: "princeton/p", PerNode: gpu, Slice: "ple.a.b"}), OutOfScope},
		{"pool ok", pool(PoolGrant{Pool: "princeton/p", PerNode: gpu, Slice: "plc.a.b"}), ""},
		{"exp before iat", func() Claims { c := sliverClaims("plc.a.b"); c.Expiry = c.IssuedAt - 1; return c }(), Malformed},

		// Times are checked as integers, at their edges, before anything
		// converts them (a Duration of exp - iat wrapped past 292 years).
		{"lifetime of exactly 8 weeks", func() Claims {
			c := sliverClaims("plc.a.b")
			c.Expiry = c.IssuedAt + MaxLifetimeSeconds
			return c
		}(), ""},
		{"exp in 2320 (exp - iat wraps a Duration)", func() Claims {
			c := sliverClaims("plc.a.b")
			c.Expiry = time.Date(2320, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
			return c
		}(), InvalidGrant},
		{"exp after year 9999", func() Claims { c := sliverClaims("plc.a.b"); c.Expiry = MaxUnixTime + 1; return c }(), Malformed},
		{"exp the largest int64", func() Claims { c := sliverClaims("plc.a.b"); c.Expiry = math.MaxInt64; return c }(), Malformed},
		{"iat the largest int64", func() Claims {
			c := sliverClaims("plc.a.b")
			c.IssuedAt, c.Expiry = math.MaxInt64-1, math.MaxInt64
			return c
		}(), Malformed},
		{"iat and exp the smallest int64", func() Claims {
			c := sliverClaims("plc.a.b")
			c.IssuedAt, c.Expiry = math.MinInt64, math.MinInt64+1
			return c
		}(), Malformed},
		{"nbf negative", func() Claims { c := sliverClaims("plc.a.b"); c.NotBefore = -1; return c }(), Malformed},
		{"nbf after year 9999", func() Claims { c := sliverClaims("plc.a.b"); c.NotBefore = MaxUnixTime + 1; return c }(), Malformed},
		{"slice expiry the largest int64", func() Claims {
			c := sliverClaims("plc.a.b")
			c.Sliver.ExpiresAt = math.MaxInt64
			return c
		}(), InvalidGrant},

		// Withdrawals.
		{"withdrawal", withdrawal("plc.a.b"), ""},
		{"withdrawal of another authority's slice", withdrawal("ple.a.b"), OutOfScope},
		{"withdrawal not of a full name", withdrawal("codeen"), InvalidGrant},
		{"withdrawal and sliver", func() Claims { c := withdrawal("plc.a.b"); c.Sliver = sliverClaims("plc.a.b").Sliver; return c }(), InvalidGrant},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := plc.Issue(tc.claims)
			if ReasonOf(err) != tc.want {
				t.Fatalf("Issue: reason %q (%v), want %q", ReasonOf(err), err, tc.want)
			}
			// The verifier refuses the same claims signed without Issue's checks.
			c := tc.claims
			c.Issuer = "plc"
			tok, err := plc.sign(TypeTicket, c)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := verifier().Verify(tok, now); ReasonOf(err) != tc.want {
				t.Fatalf("Verify: reason %q (%v), want %q", ReasonOf(err), err, tc.want)
			}
		})
	}
}

// withdrawal returns the claims of a withdrawal of slice (a full name).
func withdrawal(slice string) Claims {
	c := sliverClaims(slice)
	c.Sliver, c.Withdraw = nil, &WithdrawGrant{Slice: slice}
	return c
}

// TestDelegationTimeBounds checks a delegation's times as integers at their
// edges: one valid for ever (exp the largest int64) or past year 9999 is
// refused, not taken as the parent's whole life.
func TestDelegationTimeBounds(t *testing.T) {
	for _, tc := range []struct {
		name          string
		iat, nbf, exp int64
		want          Reason
	}{
		{"a year", now.Add(-time.Hour).Unix(), 0, now.Add(365 * 24 * time.Hour).Unix(), ""},
		{"until year 9999", now.Add(-time.Hour).Unix(), 0, MaxUnixTime, ""},
		{"past year 9999", now.Add(-time.Hour).Unix(), 0, MaxUnixTime + 1, BadDelegation},
		{"exp the largest int64", now.Add(-time.Hour).Unix(), 0, math.MaxInt64, BadDelegation},
		{"iat negative", -5, 0, now.Add(time.Hour).Unix(), BadDelegation},
		{"nbf past year 9999", now.Add(-time.Hour).Unix(), MaxUnixTime + 1, now.Add(time.Hour).Unix(), BadDelegation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := plc.sign(TypeDelegation, DelegationClaims{
				Issuer: "plc", Subject: japan.Authority, Key: EncodePublicKey(pub(japanKey)), KeyID: japan.KeyID,
				IssuedAt: tc.iat, NotBefore: tc.nbf, Expiry: tc.exp,
			})
			if err != nil {
				t.Fatal(err)
			}
			c := sliverClaims("plc.japan.utokyo.codeen")
			c.Chain = []string{d}
			tok, err := japan.Issue(c)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := verifier().Verify(tok, now); ReasonOf(err) != tc.want {
				t.Fatalf("reason %q (%v), want %q", ReasonOf(err), err, tc.want)
			}
		})
	}
}

// TestOrder checks the total order of a slice's tickets.
func TestOrder(t *testing.T) {
	a, b := Order{IssuedAt: 10, Hash: "aa"}, Order{IssuedAt: 10, Hash: "bb"}
	for _, tc := range []struct {
		name string
		o, p Order
		want bool
	}{
		{"later iat", Order{IssuedAt: 11, Hash: "00"}, b, true},
		{"earlier iat", Order{IssuedAt: 9, Hash: "ff"}, a, false},
		{"same iat, greater hash", b, a, true},
		{"same iat, smaller hash", a, b, false},
		{"the same ticket is not newer than itself", a, a, false},
		{"a ticket over a slice made before hashes were kept", a, Order{IssuedAt: 10}, true},
	} {
		if got := tc.o.After(tc.p); got != tc.want {
			t.Errorf("%s: %v.After(%v) = %v, want %v", tc.name, tc.o, tc.p, got, tc.want)
		}
	}
}

func TestRotation(t *testing.T) {
	next := NewSigner("plc", strangeKey)
	v := verifier()
	v.Keys["plc"] = append(v.Keys["plc"], Key{ID: next.KeyID, Public: pub(strangeKey)})
	for _, s := range []Signer{plc, next} {
		if _, err := v.Verify(mustIssue(t, s, sliverClaims("plc.a.b")), now); err != nil {
			t.Fatalf("key %s: %v", s.KeyID, err)
		}
	}
	v.Keys["plc"] = v.Keys["plc"][1:] // the old key dropped
	if _, err := v.Verify(mustIssue(t, plc, sliverClaims("plc.a.b")), now); ReasonOf(err) != BadSignature {
		t.Fatalf("a dropped key still verifies: %v", err)
	}
}

func TestDelegateRefuses(t *testing.T) {
	for _, child := range []string{"plc", "plc.japan.tokyo", "ple.japan", "plc.", "plc.Japan"} {
		if _, err := plc.Delegate(child, pub(japanKey), now, now.Add(time.Hour)); err == nil {
			t.Errorf("Delegate(%q) succeeded", child)
		}
	}
	if _, err := plc.Delegate("plc.japan", pub(japanKey), now, now); err == nil {
		t.Error("a delegation that expires now was made")
	}
}

func TestKeysRoundTrip(t *testing.T) {
	pemKey, err := EncodePrivateKey(plcKey)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodePrivateKey(pemKey)
	if err != nil || !back.Equal(plcKey) {
		t.Fatalf("private key round trip: %v", err)
	}
	if _, err := DecodePrivateKey([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")); err == nil || strings.Contains(err.Error(), "AAAA") {
		t.Fatalf("a broken key: %v", err)
	}
	p, err := DecodePublicKey(EncodePublicKey(pub(plcKey)))
	if err != nil || !p.Equal(pub(plcKey)) {
		t.Fatalf("public key round trip: %v", err)
	}
	if _, err := DecodePublicKey(base64.StdEncoding.EncodeToString([]byte("short"))); err == nil {
		t.Fatal("a 5-byte public key decoded")
	}
}

package ticket

import (
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
)

const testMessageType = "planetkube-test+jwt"

type testMessage struct {
	Issuer string `json:"iss"`
	Note   string `json:"note"`
}

func TestSignVerifyMessage(t *testing.T) {
	plcKeys := []Key{{ID: plc.KeyID, Public: pub(plcKey)}}
	good, err := plc.SignMessage(testMessageType, testMessage{Issuer: "plc", Note: "hello"}, 1024)
	if err != nil {
		t.Fatalf("SignMessage: %v", err)
	}
	big, err := plc.SignMessage(testMessageType, testMessage{Issuer: "plc", Note: strings.Repeat("x", 2*MaxTokenBytes)}, 4*MaxTokenBytes)
	if err != nil {
		t.Fatalf("SignMessage of a message over MaxTokenBytes: %v", err)
	}
	ticketToken, err := plc.Issue(sliverClaims("plc.princeton.codeen"))
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	header := map[string]any{"alg": "EdDSA", "typ": testMessageType, "kid": plc.KeyID}
	// Signed with another key under plc's kid.
	forged := raw(header, testMessage{Issuer: "plc"}, func(in []byte) []byte { return ed25519.Sign(strangeKey, in) })

	for _, tc := range []struct {
		name   string
		token  string
		max    int
		keys   []Key
		reason Reason
	}{
		{"good", good, 1024, plcKeys, ""},
		{"good among several keys", good, 1024, []Key{{ID: japan.KeyID, Public: pub(japanKey)}, plcKeys[0]}, ""},
		{"larger than a ticket", big, 4 * MaxTokenBytes, plcKeys, ""},
		{"over its bound", good, len(good) - 1, plcKeys, Malformed},
		{"a ticket", ticketToken, MaxTokenBytes, plcKeys, Malformed},
		{"garbage", "not a token", 1024, plcKeys, Malformed},
		{"unknown kid", good, 1024, []Key{{ID: japan.KeyID, Public: pub(japanKey)}}, UnknownIssuer},
		{"no keys", good, 1024, nil, UnknownIssuer},
		{"forged", forged, 1024, plcKeys, BadSignature},
		{"kid on the wrong key", good, 1024, []Key{{ID: plc.KeyID, Public: pub(japanKey)}}, BadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload, kid, err := VerifyMessage(tc.token, testMessageType, tc.max, tc.keys)
			if tc.reason != "" {
				if got := ReasonOf(err); got != tc.reason {
					t.Fatalf("got %v, want a refusal for %s", err, tc.reason)
				}
				if payload != nil || kid != "" {
					t.Fatalf("a refusal returned payload %q, kid %q", payload, kid)
				}
				return
			}
			if err != nil {
				t.Fatalf("VerifyMessage: %v", err)
			}
			var m testMessage
			if err := json.Unmarshal(payload, &m); err != nil || m.Issuer != "plc" || kid != plc.KeyID {
				t.Fatalf("got payload %q (%v), kid %q", payload, err, kid)
			}
		})
	}
}

func TestSignMessageRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		signer  Signer
		typ     string
		payload any
		max     int
	}{
		{"no type", plc, "", testMessage{}, 1024},
		{"the ticket type", plc, TypeTicket, sliverClaims("plc.princeton.codeen"), MaxTokenBytes},
		{"the delegation type", plc, TypeDelegation, DelegationClaims{}, MaxTokenBytes},
		{"over its bound", plc, testMessageType, testMessage{Note: strings.Repeat("x", 1024)}, 1024},
		{"no key", Signer{Authority: "plc", KeyID: "k"}, testMessageType, testMessage{}, 1024},
		{"not JSON", plc, testMessageType, func() {}, 1024},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tok, err := tc.signer.SignMessage(tc.typ, tc.payload, tc.max); err == nil {
				t.Fatalf("signed %q", tok)
			}
		})
	}
}

func TestMessageTypesAreSeparate(t *testing.T) {
	plcKeys := []Key{{ID: plc.KeyID, Public: pub(plcKey)}}
	msg, err := plc.SignMessage(testMessageType, sliverClaims("plc.princeton.codeen"), MaxTokenBytes)
	if err != nil {
		t.Fatalf("SignMessage: %v", err)
	}
	// A message with a ticket's claims is not a ticket.
	if _, err := verifier().Verify(msg, now); ReasonOf(err) != Malformed {
		t.Fatalf("Verify of a message: got %v, want Malformed", err)
	}
	// Nor is it another type's message.
	if _, _, err := VerifyMessage(msg, "planetkube-other+jwt", MaxTokenBytes, plcKeys); ReasonOf(err) != Malformed {
		t.Fatalf("VerifyMessage as another type: got %v, want Malformed", err)
	}
	// VerifyMessage checks no ticket, even a well-signed one.
	tok, err := plc.Issue(sliverClaims("plc.princeton.codeen"))
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	for _, typ := range []string{TypeTicket, TypeDelegation, ""} {
		if _, _, err := VerifyMessage(tok, typ, MaxTokenBytes, plcKeys); err == nil {
			t.Fatalf("VerifyMessage accepted type %q", typ)
		}
		if _, _, err := InspectMessage(tok, typ, MaxTokenBytes); err == nil {
			t.Fatalf("InspectMessage accepted type %q", typ)
		}
	}
}

func TestInspectMessage(t *testing.T) {
	msg, err := japan.SignMessage(testMessageType, testMessage{Issuer: "plc.japan"}, 1024)
	if err != nil {
		t.Fatalf("SignMessage: %v", err)
	}
	payload, kid, err := InspectMessage(msg, testMessageType, 1024)
	var m testMessage
	if err != nil || json.Unmarshal(payload, &m) != nil || m.Issuer != "plc.japan" || kid != japan.KeyID {
		t.Fatalf("InspectMessage: %q, %q, %v", payload, kid, err)
	}
	if _, _, err := InspectMessage(msg, testMessageType, len(msg)-1); ReasonOf(err) != Malformed {
		t.Fatalf("InspectMessage over its bound: got %v, want Malformed", err)
	}
}

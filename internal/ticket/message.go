package ticket

import (
	"bytes"
	"errors"
	"fmt"
)

// Signed messages are compact JWS tokens like tickets, signed by an
// authority's key, for protocols between installs (the federation feed): a
// message has its own JWS type, so that it cannot pass for a ticket, a
// delegation or another protocol's message, and its own size bound. What
// its payload means, and which of its claims to check, is the caller's.

// checkMessageType refuses the empty type, which would accept a token
// without typ, and the types of tickets and delegations, which only Issue
// and Delegate sign and only Verify checks, with every check of theirs.
func checkMessageType(typ string) error {
	switch typ {
	case "":
		return errors.New("a signed message needs a JWS type")
	case TypeTicket, TypeDelegation:
		return fmt.Errorf("%q is not a message type: tickets and delegations are signed by Issue and Delegate, checked by Verify", typ)
	}
	return nil
}

// SignMessage signs payload (JSON) as a compact JWS of type typ, at most
// maxBytes long.
func (s Signer) SignMessage(typ string, payload any, maxBytes int) (string, error) {
	if err := checkMessageType(typ); err != nil {
		return "", err
	}
	return s.signLimit(typ, payload, maxBytes)
}

// VerifyMessage checks a compact JWS of type typ (at most maxBytes)
// against keys (the signer's, found by kid) and returns its payload and
// kid. Refusals are *Refusal: Malformed for a token that is not a JWS of
// that type and size, UnknownIssuer when no key has the kid and
// BadSignature when the signature does not verify with the key that has.
// The payload is the signer's bytes, unchecked: decode it and check its
// claims.
func VerifyMessage(token, typ string, maxBytes int, keys []Key) (payload []byte, kid string, err error) {
	if err := checkMessageType(typ); err != nil {
		return nil, "", err
	}
	jws, kid, payload, err := parseLimit(token, typ, maxBytes)
	if err != nil {
		return nil, "", err
	}
	for _, k := range keys {
		if k.ID != kid {
			continue
		}
		if !jws.verify(k.Public) {
			return nil, "", refuse(BadSignature, fmt.Sprintf("the signature does not verify with key %q", kid))
		}
		return payload, kid, nil
	}
	return nil, "", refuse(UnknownIssuer, fmt.Sprintf("no key %q is known for this message", kid))
}

// InspectMessage decodes a compact JWS of type typ (at most maxBytes)
// without verifying anything but its form, and returns its payload and kid:
// to learn which signer's keys to verify it with (its iss), or for display.
// Trust nothing else in it before VerifyMessage.
func InspectMessage(token, typ string, maxBytes int) (payload []byte, kid string, err error) {
	if err := checkMessageType(typ); err != nil {
		return nil, "", err
	}
	_, kid, payload, err = parseLimit(token, typ, maxBytes)
	if err != nil {
		return nil, "", err
	}
	return payload, kid, nil
}

// MessageType returns the JWS type a compact token's header declares,
// unverified, or "" when its header does not decode: to choose which of a
// protocol's types to verify it as (VerifyMessage checks the type again).
// Only the header is decoded, however long the token.
func MessageType(token string) string {
	h64, _, ok := bytes.Cut([]byte(token), []byte{'.'})
	if !ok || len(h64) > 1024 {
		return ""
	}
	head, _, err := unbase64("header", h64, make([]byte, b64.DecodedLen(len(h64))))
	if err != nil {
		return ""
	}
	h, err := decodeHeader(head)
	if err != nil {
		return ""
	}
	typ, _ := h["typ"].(string)
	return typ
}

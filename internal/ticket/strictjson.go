package ticket

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode"

	sigsjson "sigs.k8s.io/json"
)

// Strict JSON. A signed token must mean one thing to every reader, but
// JSON readers disagree on two points: an object with a member name twice
// (encoding/json and most readers keep the last, some the first, go-jose
// refuses it), and member names that differ only in case (encoding/json
// fills the field "aud" from "AUD" or "Aud"; go-jose, RFC 7515 and most
// other languages' readers do not). So the header, the claims of tickets
// and delegations, and the payloads given to DecodeStrict are refused
// (Malformed) when
//
//   - any object, at any depth, has two members of the same name (after
//     unescaping: "a\u0075d" is "aud"); or
//   - a member's name is not exactly a name that the Go type it decodes
//     into reads, but equals one under Unicode case folding, dashes and
//     underscores ignored (as encoding/json, and json/v2's nocase, match):
//     "AUD" or "Aud" in the claims, "ALG" or "Kid" in the header. Other
//     unknown members are allowed and ignored, by every reader alike.
//
// What passes is then decoded case-sensitively (sigs.k8s.io/json), so that
// names match exactly even where the check above does not know the type (a
// value with its own UnmarshalJSON). sigs.k8s.io/json's own
// DisallowDuplicateFields is not enough: it misses a repeated unknown
// member of a struct, and every duplicate inside an unknown member's value.

// maxJSONDepth bounds the nesting of a checked value, as encoding/json's
// scanner does.
const maxJSONDepth = 10000

// jwsHeaderNames are the header parameters registered by RFC 7515 (and
// RFC 7797's b64, RFC 8555's nonce and url): a header member equal to one
// of these under case folding, but not exactly, is refused. parseLimit
// reads the header into a map; this type only names its members.
type jwsHeaderNames struct {
	Alg     any `json:"alg"`
	JKU     any `json:"jku"`
	JWK     any `json:"jwk"`
	Kid     any `json:"kid"`
	X5U     any `json:"x5u"`
	X5C     any `json:"x5c"`
	X5T     any `json:"x5t"`
	X5TS256 any `json:"x5t#S256"`
	Typ     any `json:"typ"`
	Cty     any `json:"cty"`
	Crit    any `json:"crit"`
	B64     any `json:"b64"`
	Nonce   any `json:"nonce"`
	URL     any `json:"url"`
}

var jwsHeaderType = reflect.TypeFor[jwsHeaderNames]()

// decodeHeader checks a JWS header strictly and reads it into a map, whose
// member names match exactly. A refusal is Malformed.
func decodeHeader(head []byte) (map[string]any, error) {
	if err := checkStrict(head, jwsHeaderType); err != nil {
		return nil, refuse(Malformed, "the header is not a strict JSON object: "+err.Error())
	}
	var h map[string]any
	if err := json.Unmarshal(head, &h); err != nil || h == nil {
		return nil, refuse(Malformed, "the header is not a JSON object")
	}
	return h, nil
}

// DecodeStrict decodes payload, one JSON object, into out (a pointer) the
// way this package decodes the claims of tickets and delegations: it
// refuses an object with a duplicate member name at any depth, and a member
// whose name matches one of out's fields only in another case ("AUD" for
// "aud"); then it decodes with names matching exactly (numbers decoded into
// an interface value are int64 when they are integers). Use it for the
// payload of a signed message (VerifyMessage, InspectMessage), so that what
// it says is what any other JSON reader reads. The error names the member.
func DecodeStrict(payload []byte, out any) error {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("DecodeStrict needs a non-nil pointer, not %T", out)
	}
	if err := checkStrict(payload, rv.Type().Elem()); err != nil {
		return err
	}
	return sigsjson.UnmarshalCaseSensitivePreserveInts(payload, out)
}

// checkStrict checks that data is one JSON object, with no duplicate
// member name at any depth and no member matching a name of t (the type it
// decodes into) only under case folding. It scans the bytes once, without
// decoding anything (the decoder that follows checks the JSON itself): on
// the hot path of every verification, it allocates only for a member name
// with escapes or not known to t.
func checkStrict(data []byte, t reflect.Type) error {
	sc := scanner{data: data}
	sc.space()
	if sc.i >= len(data) || data[sc.i] != '{' {
		return errors.New("not a JSON object")
	}
	if err := sc.value(t, 0); err != nil {
		return err
	}
	if sc.space(); sc.i != len(data) {
		return errors.New("data after the JSON object")
	}
	return nil
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// scanner walks one JSON value byte by byte, keeping the path to the
// current member for messages.
type scanner struct {
	data []byte
	i    int
	path []step
}

// step is one element of a path: a member's name or an array's index.
type step struct {
	name  []byte
	index int
}

func (sc *scanner) where() string {
	if len(sc.path) == 0 {
		return "the top-level object"
	}
	var b strings.Builder
	for i, st := range sc.path {
		switch {
		case st.name == nil:
			b.WriteString("[" + strconv.Itoa(st.index) + "]")
		case i > 0:
			b.WriteString("." + string(st.name))
		default:
			b.Write(st.name)
		}
	}
	return b.String()
}

func (sc *scanner) space() {
	for sc.i < len(sc.data) && isJSONSpace(sc.data[sc.i]) {
		sc.i++
	}
}

var errEnd = errors.New("not JSON: unexpected end of input")

// expect consumes c after spaces.
func (sc *scanner) expect(c byte) error {
	if sc.space(); sc.i >= len(sc.data) {
		return errEnd
	}
	if sc.data[sc.i] != c {
		return fmt.Errorf("not JSON: %q where %q was expected, at byte %d", sc.data[sc.i], c, sc.i)
	}
	sc.i++
	return nil
}

// value walks the next value, to be decoded into t (nil: a type not known
// here, whose members are only checked for duplicates).
func (sc *scanner) value(t reflect.Type, depth int) error {
	if depth > maxJSONDepth {
		return fmt.Errorf("nested more than %d deep", maxJSONDepth)
	}
	if sc.space(); sc.i >= len(sc.data) {
		return errEnd
	}
	switch sc.data[sc.i] {
	case '{':
		return sc.object(plain(t), depth)
	case '[':
		return sc.array(plain(t), depth)
	case '"':
		_, err := sc.str()
		return err
	}
	start := sc.i // a number or a literal: the decoder checks it
	for sc.i < len(sc.data) && !isJSONSpace(sc.data[sc.i]) && !strings.ContainsRune(",:]}[{\"", rune(sc.data[sc.i])) {
		sc.i++
	}
	if sc.i == start {
		return fmt.Errorf("not JSON: unexpected %q at byte %d", sc.data[sc.i], sc.i)
	}
	return nil
}

func (sc *scanner) array(t reflect.Type, depth int) error {
	sc.i++ // [
	var elem reflect.Type
	if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		elem = t.Elem()
	}
	if sc.space(); sc.i < len(sc.data) && sc.data[sc.i] == ']' {
		sc.i++
		return nil
	}
	for n := 0; ; n++ {
		if done, err := sc.member(step{index: n}, elem, depth, ']'); err != nil || done {
			return err
		}
	}
}

func (sc *scanner) object(t reflect.Type, depth int) error {
	sc.i++ // {
	var (
		names *fieldNames
		elem  reflect.Type
	)
	if t != nil {
		switch t.Kind() {
		case reflect.Struct:
			names = namesOf(t)
		case reflect.Map:
			elem = t.Elem()
		}
	}
	if sc.space(); sc.i < len(sc.data) && sc.data[sc.i] == '}' {
		sc.i++
		return nil
	}
	var seen [16][]byte
	keys := seen[:0]
	for {
		if sc.space(); sc.i >= len(sc.data) || sc.data[sc.i] != '"' {
			return errors.New("not JSON: an object's member name is not a string")
		}
		key, err := sc.str()
		if err != nil {
			return err
		}
		for _, k := range keys {
			if bytes.Equal(k, key) {
				return fmt.Errorf("member %q appears twice in %s", key, sc.where())
			}
		}
		keys = append(keys, key)
		child := elem
		if names != nil {
			var known bool
			if child, known = names.exact[string(key)]; !known {
				if name, ok := names.folded[foldName(string(key))]; ok {
					return fmt.Errorf("member %q in %s is not %q: member names match exactly, and one that differs from a known name only in case is refused", key, sc.where(), name)
				}
			}
		}
		if err := sc.expect(':'); err != nil {
			return err
		}
		if done, err := sc.member(step{name: key}, child, depth, '}'); err != nil || done {
			return err
		}
	}
}

// member walks the value of an array's element or an object's member (at
// st of the path, to be decoded into t), then the comma that follows it or
// the bracket that closes its container: done says it was the bracket.
func (sc *scanner) member(st step, t reflect.Type, depth int, closing byte) (done bool, err error) {
	sc.path = append(sc.path, st)
	if err := sc.value(t, depth+1); err != nil {
		return false, err
	}
	sc.path = sc.path[:len(sc.path)-1]
	if sc.space(); sc.i >= len(sc.data) {
		return false, errEnd
	}
	switch sc.data[sc.i] {
	case ',':
		sc.i++
		return false, nil
	case closing:
		sc.i++
		return true, nil
	}
	return false, fmt.Errorf("not JSON: %q where ',' or %q was expected, at byte %d", sc.data[sc.i], closing, sc.i)
}

// str consumes a string and returns its value: the bytes between the
// quotes, unescaped when they hold escapes.
func (sc *scanner) str() ([]byte, error) {
	start := sc.i + 1
	escaped := false
	for j := start; j < len(sc.data); j++ {
		switch c := sc.data[j]; {
		case c == '\\':
			escaped = true
			j++
		case c == '"':
			sc.i = j + 1
			if !escaped {
				return sc.data[start:j], nil
			}
			var out string
			if err := json.Unmarshal(sc.data[start-1:j+1], &out); err != nil {
				return nil, fmt.Errorf("not JSON: a string at byte %d: %v", start-1, err)
			}
			return []byte(out), nil
		case c < 0x20:
			return nil, fmt.Errorf("not JSON: a control character in a string at byte %d", j)
		}
	}
	return nil, errEnd
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// plain returns t without pointers, or nil when t decodes itself
// (UnmarshalJSON): its members' names are its own business.
func plain(t reflect.Type) reflect.Type {
	for t != nil {
		if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
			return nil
		}
		if t.Kind() != reflect.Pointer {
			return t
		}
		t = t.Elem()
	}
	return nil
}

// fieldNames are the member names a struct type reads, as encoding/json
// finds them (tags, untagged embedded structs flattened, the shallower
// field first), with their types; folded maps foldName(name) to name.
type fieldNames struct {
	exact  map[string]reflect.Type
	folded map[string]string
}

var fieldNamesCache sync.Map // reflect.Type → *fieldNames

func namesOf(t reflect.Type) *fieldNames {
	if n, ok := fieldNamesCache.Load(t); ok {
		return n.(*fieldNames)
	}
	n := &fieldNames{exact: map[string]reflect.Type{}, folded: map[string]string{}}
	visited := map[reflect.Type]bool{}
	for level := []reflect.Type{t}; len(level) > 0; {
		var next []reflect.Type
		for _, st := range level {
			if visited[st] {
				continue
			}
			visited[st] = true
			for i := 0; i < st.NumField(); i++ {
				sf := st.Field(i)
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, _, _ := strings.Cut(tag, ",")
				ft := sf.Type
				if sf.Anonymous {
					et := ft
					if et.Kind() == reflect.Pointer {
						et = et.Elem()
					}
					if !sf.IsExported() && et.Kind() != reflect.Struct {
						continue
					}
					if name == "" && et.Kind() == reflect.Struct {
						next = append(next, et)
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				if name == "" {
					name = sf.Name
				}
				if _, ok := n.exact[name]; !ok {
					n.exact[name] = ft
					n.folded[foldName(name)] = name
				}
			}
		}
		level = next
	}
	actual, _ := fieldNamesCache.LoadOrStore(t, n)
	return actual.(*fieldNames)
}

// foldName maps names that are equal under Unicode simple case folding
// (strings.EqualFold: "K", "k" and the Kelvin sign alike), dashes and
// underscores ignored, to the same string.
func foldName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == '-' || r == '_' {
			continue
		}
		// The smallest rune of r's folding orbit stands for all of it.
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}

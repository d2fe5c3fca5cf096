package ticket

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
// decodes into) only under case folding.
func checkStrict(data []byte, t reflect.Type) error {
	if i := bytes.IndexFunc(data, func(r rune) bool { return !isJSONSpace(r) }); i < 0 || data[i] != '{' {
		return errors.New("not a JSON object")
	}
	w := walker{dec: json.NewDecoder(bytes.NewReader(data))}
	w.dec.UseNumber() // numbers are not looked at: no need to parse them
	if err := w.value(t, 0); err != nil {
		return err
	}
	if _, err := w.dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

func isJSONSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }

// walker walks one JSON value token by token, keeping the path to the
// current member for messages.
type walker struct {
	dec  *json.Decoder
	path []string
}

func (w *walker) where() string {
	if len(w.path) == 0 {
		return "the top-level object"
	}
	return strings.TrimPrefix(strings.Join(w.path, ""), ".")
}

func (w *walker) token() (json.Token, error) {
	tok, err := w.dec.Token()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("not JSON: %v", err)
	}
	return tok, nil
}

// value walks the next value, to be decoded into t (nil: a type not known
// here, whose members are only checked for duplicates).
func (w *walker) value(t reflect.Type, depth int) error {
	if depth > maxJSONDepth {
		return fmt.Errorf("nested more than %d deep", maxJSONDepth)
	}
	tok, err := w.token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		return w.object(plain(t), depth)
	case json.Delim('['):
		var elem reflect.Type
		if t = plain(t); t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; w.dec.More(); i++ {
			w.path = append(w.path, "["+strconv.Itoa(i)+"]")
			if err := w.value(elem, depth+1); err != nil {
				return err
			}
			w.path = w.path[:len(w.path)-1]
		}
		_, err := w.token() // ]
		return err
	}
	return nil
}

func (w *walker) object(t reflect.Type, depth int) error {
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
	seen := map[string]struct{}{}
	for w.dec.More() {
		tok, err := w.token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		if _, dup := seen[key]; dup {
			return fmt.Errorf("member %q appears twice in %s", key, w.where())
		}
		seen[key] = struct{}{}
		child := elem
		if names != nil {
			var known bool
			if child, known = names.exact[key]; !known {
				if name, ok := names.folded[foldName(key)]; ok {
					return fmt.Errorf("member %q in %s is not %q: member names match exactly, and one that differs from a known name only in case is refused", key, w.where(), name)
				}
			}
		}
		w.path = append(w.path, "."+key)
		if err := w.value(child, depth+1); err != nil {
			return err
		}
		w.path = w.path[:len(w.path)-1]
	}
	_, err := w.token() // }
	return err
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

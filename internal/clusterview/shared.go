package clusterview

import (
	"maps"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// maxShared bounds the maps a sharedMaps holds of each kind; past it, it
// starts again (the maps already given out stay with their pods).
const maxShared = 4096

// shared holds the maps the cache transforms give the stripped pods.
var shared = &sharedMaps{}

// sharedMaps hands out one map for equal maps, so that the stripped pods
// that have equal labels, annotations or requests share them: a slice's
// slivers all have the same labels and template hash, and on like nodes
// the same requests, so a cache of 20,000 slivers holds a few hundred
// maps, not 60,000. Cached objects are never changed (a reader that must
// change one copies it first), which makes the sharing safe.
type sharedMaps struct {
	mu    sync.Mutex
	strs  map[string]map[string]string
	lists map[string]corev1.ResourceList
}

// strings returns a map equal to m, shared with the other callers that
// passed an equal one.
func (s *sharedMaps) strings(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	return share(s, &s.strs, keyOf(m, func(v string) string { return v }), m)
}

// resources returns a resource list equal to rl, shared with the other
// callers that passed an equal one.
func (s *sharedMaps) resources(rl corev1.ResourceList) corev1.ResourceList {
	if len(rl) == 0 {
		return rl
	}
	return share(s, &s.lists, keyOf(rl, func(q resource.Quantity) string { return q.String() }), rl)
}

// keyOf is m's entries in key order, each key and value followed by a 0.
func keyOf[K ~string, V any, M ~map[K]V](m M, str func(V) string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b.WriteString(string(k))
		b.WriteByte(0)
		b.WriteString(str(m[k]))
		b.WriteByte(0)
	}
	return b.String()
}

// share returns the value table holds for key, or holds v for it.
func share[V any](s *sharedMaps, table *map[string]V, key string, v V) V {
	s.mu.Lock()
	defer s.mu.Unlock()
	if have, ok := (*table)[key]; ok {
		return have
	}
	if *table == nil || len(*table) >= maxShared {
		*table = map[string]V{}
	}
	(*table)[key] = v
	return v
}

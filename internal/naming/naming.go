// Package naming derives the names of the objects PlanetKube creates for
// sites and slices: slice full names, slice namespaces, sliver Pods and the
// RBAC objects of sites and slices. Every function is deterministic, so a
// controller can recompute a name instead of storing it.
package naming

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Names of the per-slice objects in a slice namespace, and the ClusterRole
// that slice users are bound to there.
const (
	// AuthorizedKeysSecret is the Secret holding the SSH keys of a slice's users.
	AuthorizedKeysSecret = "authorized-keys"
	// SliceUsersRoleBinding binds a slice's users to SliceUserClusterRole in
	// the slice namespace.
	SliceUsersRoleBinding = "slice-users"
	// SliceUserClusterRole is what a slice user may do in the slice namespace.
	SliceUserClusterRole = "planetkube-slice-user"
)

// Site roles that get a RoleBinding in the site namespace.
const (
	RolePI   = "pi"
	RoleTech = "tech"
	RoleUser = "user"
)

// hashLen is the number of hex characters of the hash suffix of a shortened name.
const hashLen = 8

// sitePrefix prefixes the names of the per-site-role RBAC objects.
const sitePrefix = "planetkube-site-"

// FullName returns a slice's PlanetLab-style full name, "<authority>.<site>.<slice>".
func FullName(authority, site, slice string) string {
	return authority + "." + site + "." + slice
}

// SliceNamespace returns the namespace of a slice's slivers, "<site>-<slice>",
// or when that is not a valid DNS-1123 label (longer than 63 characters), a
// prefix of it followed by "-" and 8 hex characters of sha256("<site>/<slice>").
//
// Site names have no dash, so the first dash separates the site from the slice
// and a slice namespace never equals a site namespace (the bare site name).
func SliceNamespace(site, slice string) string {
	return label(site+"-"+slice, site+"/"+slice)
}

// SliverName returns the name of the Pod of a slice's sliver on a node,
// "<slice>-<node>", or when that is not a valid DNS-1123 label (too long, or
// a node name with dots or upper case), a sanitized prefix of it followed by
// "-" and 8 hex characters of sha256("<slice>/<node>").
func SliverName(slice, node string) string {
	return label(slice+"-"+node, slice+"/"+node)
}

// ReservedSliverName returns the name of a sliver that runs with reserved
// resources identified by variant (a short hash of the bound amounts): "" gives
// SliverName, anything else "<slice>-<node>-<variant>" (or its shortened
// form). A sliver whose reservation changes gets a new name, so the new Pod
// can be created while the old one terminates, and nothing that deletes the
// old Pod by name can hit the new one.
func ReservedSliverName(slice, node, variant string) string {
	if variant == "" {
		return SliverName(slice, node)
	}
	return label(slice+"-"+node+"-"+variant, slice+"/"+node+"/"+variant)
}

// SiteRoleBinding returns the name of the RoleBinding of a site role (RolePI,
// RoleTech or RoleUser) in the site namespace.
func SiteRoleBinding(role string) string {
	return sitePrefix + role
}

// SiteClusterRole returns the name of the ClusterRole granted to a site role.
func SiteClusterRole(role string) string {
	return sitePrefix + role
}

// label returns name when it is a valid DNS-1123 label. Otherwise it returns
// name lower-cased, with every character outside [a-z0-9-] replaced by '-',
// cut so that it starts and ends with [a-z0-9] and leaves room for the
// suffix, followed by "-" and the first hashLen hex characters of
// sha256(key). The result is always a valid DNS-1123 label.
func label(name, key string) string {
	if isDNS1123Label(name) {
		return name
	}
	sum := sha256.Sum256([]byte(key))
	suffix := hex.EncodeToString(sum[:])[:hashLen]

	b := []byte(strings.ToLower(name))
	for i, c := range b {
		if !isAlnum(c) && c != '-' {
			b[i] = '-'
		}
	}
	if maxPrefix := validation.DNS1123LabelMaxLength - 1 - hashLen; len(b) > maxPrefix {
		b = b[:maxPrefix]
	}
	prefix := strings.TrimFunc(string(b), func(r rune) bool { return r == '-' })
	if prefix == "" {
		return suffix
	}
	return prefix + "-" + suffix
}

// isDNS1123Label is validation.IsDNS1123Label without its regular
// expression and error messages: a slice reconcile names every sliver of
// its plan, and the regular expression was 8 % of a rollout's CPU.
func isDNS1123Label(s string) bool {
	if len(s) == 0 || len(s) > validation.DNS1123LabelMaxLength || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if !isAlnum(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return ('a' <= c && c <= 'z') || ('0' <= c && c <= '9')
}

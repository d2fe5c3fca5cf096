package naming

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// MaxAuthorityLength bounds an authority's name (plc, plc.japan).
const MaxAuthorityLength = 63

var (
	authorityRE = regexp.MustCompile(`^[a-z0-9]+(\.[a-z0-9]+)*$`)
	siteRE      = regexp.MustCompile(`^[a-z0-9]{1,32}$`)
	sliceRE     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,62}[a-z0-9])?$`)
)

// ValidAuthority says whether name is an authority's name: dot-separated
// lowercase letters and digits, at most 63 characters.
func ValidAuthority(name string) bool {
	return len(name) <= MaxAuthorityLength && authorityRE.MatchString(name)
}

// ValidSite says whether name is a site's name (PlanetLab's login_base).
func ValidSite(name string) bool { return siteRE.MatchString(name) }

// ValidSlice says whether name is a slice's short name.
func ValidSlice(name string) bool { return sliceRE.MatchString(name) }

// ValidNode says whether name can be a Node's name (a DNS subdomain, as
// the API server checks it): names that come from elsewhere (an agent's
// answer, an archive's folders) are checked with it before they are used.
func ValidNode(name string) bool { return len(validation.IsDNS1123Subdomain(name)) == 0 }

// ParseFullName splits a slice's full name "<authority>.<site>.<slice>".
// Site and slice names have no dots, so the last two dot-separated parts are
// the site and the slice and the rest is the authority (which may itself
// have dots: plc.japan.utokyo.codeen).
func ParseFullName(full string) (authority, site, slice string, ok bool) {
	i := strings.LastIndexByte(full, '.')
	if i < 0 {
		return "", "", "", false
	}
	rest, slice := full[:i], full[i+1:]
	j := strings.LastIndexByte(rest, '.')
	if j < 0 {
		return "", "", "", false
	}
	authority, site = rest[:j], rest[j+1:]
	if !ValidAuthority(authority) || !ValidSite(site) || !ValidSlice(slice) {
		return "", "", "", false
	}
	return authority, site, slice, true
}

// WithinAuthority says whether name is authority or one of its delegates
// (plc covers plc and plc.japan, not plcx).
func WithinAuthority(name, authority string) bool {
	return name == authority || strings.HasPrefix(name, authority+".")
}

// reservedPrefix starts the names of the namespaces PlanetKube makes that
// are not a site's: no site may be named "planetkube" (the Site CRD refuses
// it), so no site or slice namespace starts with it.
const reservedPrefix = "planetkube-"

// dashed writes an authority's name with dashes for dots: authority names
// have no dashes, so this is one-to-one.
func dashed(authority string) string { return strings.ReplaceAll(authority, ".", "-") }

// authorityHashLen is the number of hex characters of the hash that ends
// a shortened authority namespace: 64 bits, so that two long names sharing
// the kept prefix would need a collision no one can search for.
const authorityHashLen = 16

// AuthorityNamespace returns the namespace that holds the Slices of a
// foreign authority (one namespace per authority, so that what a peer runs
// here is one place to list, watch and scope): "planetkube-auth-<authority
// with dashes for dots>", or, when that is longer than a label, a prefix of
// it, "--" and 16 hex characters of sha256("auth/<authority>").
//
// The mapping is one-to-one: authority names have no empty label, so the
// full form never holds "--" and never equals a shortened one; two
// shortened ones are equal only for names that share the prefix and 64
// bits of their hash. (A namespace found with another authority's label
// is refused all the same, with NamespaceConflict.)
func AuthorityNamespace(authority string) string {
	name := reservedPrefix + "auth-" + dashed(authority)
	if len(name) <= validation.DNS1123LabelMaxLength {
		return name
	}
	sum := sha256.Sum256([]byte("auth/" + authority))
	prefix := strings.TrimRight(name[:validation.DNS1123LabelMaxLength-2-authorityHashLen], "-")
	return prefix + "--" + hex.EncodeToString(sum[:])[:authorityHashLen]
}

// IsAuthorityNamespace says whether ns is named as an authority's
// namespace. Site names have no dashes, so a site's namespace never is.
func IsAuthorityNamespace(ns string) bool { return strings.HasPrefix(ns, reservedPrefix+"auth-") }

// ForeignSliceName returns the name of a foreign slice's Slice object in its
// authority's namespace: "<site>-<slice>" (sites have no dashes, so the
// first dash splits it), shortened with a hash when too long.
func ForeignSliceName(site, slice string) string {
	name := site + "-" + slice
	if len(name) <= 64 && ValidSlice(name) {
		return name
	}
	return label(name, site+"/"+slice)
}

// ForeignSliceNamespace returns the namespace of a foreign slice's slivers:
// "planetkube-<authority with dashes>--<site>-<slice>", shortened with a
// hash when too long. It never equals a local slice namespace
// ("<site>-<slice>", no site is named planetkube) nor an authority's
// namespace (which has no "--").
func ForeignSliceNamespace(authority, site, slice string) string {
	return label(reservedPrefix+dashed(authority)+"--"+site+"-"+slice, "foreign/"+authority+"/"+site+"/"+slice)
}

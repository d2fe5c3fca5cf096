// Package trust decides which sites' nodes may run a slice: a site runs the
// slices of the authorities it trusts (Site.spec.trustedAuthorities; unset,
// only the local authority's), delegates included, and a disabled site runs
// none.
package trust

import (
	"fmt"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/ticket"
)

// Trusts says whether a site's nodes may run the slices of authority, on an
// install whose own authority is local.
func Trusts(site *planetv1.Site, local, authority string) bool {
	if site.Spec.State == planetv1.SiteDisabled {
		return false
	}
	trusted := site.Spec.TrustedAuthorities
	if len(trusted) == 0 {
		return naming.WithinAuthority(authority, local)
	}
	for _, t := range trusted {
		if naming.WithinAuthority(authority, t) {
			return true
		}
	}
	return false
}

// Filter says which sites' nodes may run the slices of one authority.
type Filter struct {
	allowed map[string]bool // by site name, for every Site
	// unknown is whether a node of a site with no Site object may run the
	// slice: for the local authority's slices, yes (as before sites chose
	// whom to trust); for another's, no: a foreign slice runs only where a
	// site agreed.
	unknown bool
}

// NewFilter computes the Filter of authority's slices over the given sites.
func NewFilter(sites []planetv1.Site, local, authority string) Filter {
	f := Filter{allowed: make(map[string]bool, len(sites)), unknown: naming.WithinAuthority(authority, local)}
	for i := range sites {
		f.allowed[sites[i].Name] = Trusts(&sites[i], local, authority)
	}
	return f
}

// Allows says whether a node of site (its planetkube.io/site label) may run
// the slice.
func (f Filter) Allows(site string) bool {
	if ok, known := f.allowed[site]; known {
		return ok
	}
	return f.unknown
}

// Trusting returns the names of the sites that trust authority, in the
// order given.
func Trusting(sites []planetv1.Site, local, authority string) []string {
	var out []string
	for i := range sites {
		if Trusts(&sites[i], local, authority) {
			out = append(out, sites[i].Name)
		}
	}
	return out
}

// CheckGrant refuses (ticket.NotTrusted) a grant for a slice of authority
// when no site here trusts it: the slice would run nowhere.
// The local authority's own slices are Slices in their sites' namespaces,
// never made from a ticket (InvalidGrant).
func CheckGrant(sites []planetv1.Site, local, authority string) error {
	if authority == local {
		return &ticket.Refusal{Reason: ticket.InvalidGrant, Message: fmt.Sprintf(
			"%s is this install's own authority: its slices are made as Slices in their site's namespace, not from tickets", local)}
	}
	if len(Trusting(sites, local, authority)) > 0 {
		return nil
	}
	return &ticket.Refusal{Reason: ticket.NotTrusted, Message: fmt.Sprintf(
		"no site here trusts %s (Site spec.trustedAuthorities): the slice would run nowhere", authority)}
}

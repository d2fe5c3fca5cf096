// Package trust decides which sites' nodes may run a slice: a site runs the
// slices of the authorities it trusts (Site.spec.trustedAuthorities; unset,
// the install's default: its own authority, or the operator's list), their
// delegates included, and a disabled site runs none.
package trust

import (
	"fmt"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/ticket"
)

// Policy is an install's trust: its own authority, and whom a site that
// sets no trustedAuthorities trusts.
type Policy struct {
	// Local is the install's authority.
	Local string
	// Default is whom a site trusts when it names no one, besides Local
	// (the manager's --default-trusted-authorities). A site that wants no
	// local slices says so in its own trustedAuthorities.
	Default []string
}

// defaults returns whom a site that names no one trusts: Local and Default.
func (p Policy) defaults() []string {
	return append([]string{p.Local}, p.Default...)
}

// Trusts says whether a site's nodes may run the slices of authority.
func (p Policy) Trusts(site *planetv1.Site, authority string) bool {
	if site.Spec.State == planetv1.SiteDisabled {
		return false
	}
	trusted := site.Spec.TrustedAuthorities
	if len(trusted) == 0 {
		trusted = p.defaults()
	}
	for _, t := range trusted {
		if naming.WithinAuthority(authority, t) {
			return true
		}
	}
	return false
}

// MayAllocate says whether a site may allocate part of its nodes to
// authority: its trust alone, whatever its state (a disabled site runs no
// one's slivers, but keeps its allocations). site nil (a namespace with no
// Site object, whose nodes run only local slices) trusts the local
// authority alone.
func (p Policy) MayAllocate(site *planetv1.Site, authority string) bool {
	if site == nil {
		return naming.WithinAuthority(authority, p.Local)
	}
	enabled := *site
	enabled.Spec.State = planetv1.SiteEnabled
	return p.Trusts(&enabled, authority)
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
func (p Policy) NewFilter(sites []planetv1.Site, authority string) Filter {
	f := Filter{allowed: make(map[string]bool, len(sites)), unknown: naming.WithinAuthority(authority, p.Local)}
	for i := range sites {
		f.allowed[sites[i].Name] = p.Trusts(&sites[i], authority)
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
func (p Policy) Trusting(sites []planetv1.Site, authority string) []string {
	var out []string
	for i := range sites {
		if p.Trusts(&sites[i], authority) {
			out = append(out, sites[i].Name)
		}
	}
	return out
}

// CheckGrant refuses (ticket.NotTrusted) a grant for a slice of authority
// when no site here trusts it: the slice would run nowhere.
// The local authority's own slices are Slices in their sites' namespaces,
// never made from a ticket (InvalidGrant).
func (p Policy) CheckGrant(sites []planetv1.Site, authority string) error {
	if authority == p.Local {
		return &ticket.Refusal{Reason: ticket.InvalidGrant, Message: fmt.Sprintf(
			"%s is this install's own authority: its slices are made as Slices in their site's namespace, not from tickets", p.Local)}
	}
	if len(p.Trusting(sites, authority)) > 0 {
		return nil
	}
	return &ticket.Refusal{Reason: ticket.NotTrusted, Message: fmt.Sprintf(
		"no site here trusts %s (Site spec.trustedAuthorities, or the install's default trust): the slice would run nowhere", authority)}
}

// CheckDefault checks a default trust list (a flag's value): each entry an
// authority name, no duplicates.
func CheckDefault(list []string) error {
	seen := map[string]bool{}
	for _, a := range list {
		if !naming.ValidAuthority(a) {
			return fmt.Errorf("%q is not an authority name (lower-case DNS labels joined by dots)", a)
		}
		if seen[a] {
			return fmt.Errorf("%q is listed twice", a)
		}
		seen[a] = true
	}
	return nil
}

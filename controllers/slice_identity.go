package controllers

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/placement"
	"github.com/planetkube/planetkube/internal/shortfall"
	"github.com/planetkube/planetkube/internal/trust"
)

// sliceIdentity is whose a slice is: its authority, site and short name,
// from which its full name and the namespace of its slivers follow. A local
// slice lives in its site's namespace; a foreign one (made from a ticket)
// lives in its authority's namespace and carries its full name.
type sliceIdentity struct {
	authority, site, name string
	foreign               bool
	// invalid says why a Slice in an authority's namespace is not a foreign
	// slice (only the Ticket controller makes those).
	invalid string
}

// identity returns whose the slice is.
func (r *SliceReconciler) identity(slice *planetv1.Slice) sliceIdentity {
	if !naming.IsAuthorityNamespace(slice.Namespace) {
		return sliceIdentity{authority: r.Authority, site: slice.Namespace, name: slice.Name}
	}
	full := slice.Annotations[planetv1.AnnotationSliceFullName]
	a, site, name, ok := naming.ParseFullName(full)
	if !ok || naming.AuthorityNamespace(a) != slice.Namespace || naming.ForeignSliceName(site, name) != slice.Name {
		return sliceIdentity{foreign: true, invalid: fmt.Sprintf(
			"namespace %s holds the slices of a foreign authority, made from its tickets; this Slice's full name (annotation %s) %q is not one of them",
			slice.Namespace, planetv1.AnnotationSliceFullName, full)}
	}
	return sliceIdentity{authority: a, site: site, name: name, foreign: true}
}

// fullName is "<authority>.<site>.<slice>"; "" for an invalid foreign slice.
func (id sliceIdentity) fullName() string {
	if id.invalid != "" {
		return ""
	}
	return naming.FullName(id.authority, id.site, id.name)
}

// namespace is the name of the namespace of the slice's slivers; "" for an
// invalid foreign slice.
func (id sliceIdentity) namespace() string {
	switch {
	case id.invalid != "":
		return ""
	case id.foreign:
		return naming.ForeignSliceNamespace(id.authority, id.site, id.name)
	}
	return naming.SliceNamespace(id.site, id.name)
}

// trustedNodes keeps the candidate nodes whose site trusts the slice's
// authority (trust.Trusts: a disabled site trusts no one). It returns the
// others that match the slice's selection (req) as refused, with why.
func (r *SliceReconciler) trustedNodes(ctx context.Context, id sliceIdentity, nodes []placement.Node, req placement.Request) ([]placement.Node, []shortfall.Refusal, error) {
	sites := &planetv1.SiteList{}
	if err := r.List(ctx, sites, client.UnsafeDisableDeepCopy); err != nil { // read-only
		return nil, nil, err
	}
	f := (trust.Policy{Local: r.Authority, Default: r.DefaultTrust}).NewFilter(sites.Items, id.authority)
	var refused []shortfall.Refusal
	matches := req.Matcher()
	out := nodes[:0]
	for _, n := range nodes {
		if f.Allows(n.Site) {
			out = append(out, n)
			continue
		}
		if matches(&n) {
			reason, msg := refusal(sites.Items, n.Site, id.authority)
			refused = append(refused, shortfall.Refusal{Node: n.Name, Site: n.Site, Reason: reason, Message: msg})
		}
	}
	return out, refused, nil
}

// refusal says why a site's nodes do not run a slice of authority.
func refusal(sites []planetv1.Site, site, authority string) (reason, message string) {
	for i := range sites {
		if sites[i].Name != site {
			continue
		}
		if sites[i].Spec.State == planetv1.SiteDisabled {
			return planetv1.ReasonSiteDisabled, "the site is disabled (Site spec.state): its nodes run no slivers"
		}
		return planetv1.ReasonNotTrusted, "the site does not trust authority " + authority +
			" (Site spec.trustedAuthorities; unset, the install's default trust)"
	}
	return planetv1.ReasonNotTrusted, "the nodes' site has no Site object here: they run only this install's own slices, not " + authority + "'s"
}

// trustChanged passes the Site events that change which slices its nodes
// run: creation, deletion, and a change of its state or trusted
// authorities.
var trustChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, okO := e.ObjectOld.(*planetv1.Site)
		n, okN := e.ObjectNew.(*planetv1.Site)
		if !okO || !okN {
			return true
		}
		return o.Spec.State != n.Spec.State || fmt.Sprint(o.Spec.TrustedAuthorities) != fmt.Sprint(n.Spec.TrustedAuthorities)
	},
}

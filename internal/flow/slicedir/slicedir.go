// Package slicedir resolves a slice's full name to what a flow lookup shows
// beside its flows: the slice's description and URL and its site's contacts.
// The node agent and the manager's cluster-wide lookup share it.
package slicedir

import (
	"context"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/flow/lookup"
	"github.com/planetkube/planetkube/internal/naming"
)

// directoryTimeout bounds one lookup in the (cached) API.
const directoryTimeout = 2 * time.Second

// Directory tells the lookup page what it shows beside a slice's flows: the
// slice's description and URL and its site's contacts (PIs and techs). It
// reads Slices and Sites through Reader (the agent's informer cache).
type Directory struct {
	Reader client.Reader
	// Authority is this install's slice authority, the first part of the
	// full names it resolves.
	Authority string
}

// Slice resolves a full name "<authority>.<site>.<slice>" of this authority.
// Site names have no dots, so the name splits unambiguously once the
// authority is known.
//
// A foreign slice's (made here from another authority's ticket) is found in
// its authority's namespace; its contacts are at its home, not here.
func (d *Directory) Slice(fullName string) (lookup.SliceInfo, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), directoryTimeout)
	defer cancel()
	site, slice, ok := d.split(fullName)
	if !ok {
		return d.foreign(ctx, fullName)
	}
	var s planetv1.Slice
	if err := d.Reader.Get(ctx, types.NamespacedName{Namespace: site, Name: slice}, &s); err != nil {
		return lookup.SliceInfo{}, false
	}
	info := lookup.SliceInfo{FullName: fullName, Description: s.Spec.Description, URL: s.Spec.URL}
	var st planetv1.Site
	if err := d.Reader.Get(ctx, types.NamespacedName{Name: site}, &st); err == nil {
		info.Contacts = contacts(&st)
		info.PIs, info.Techs = names(st.Spec.PIs), names(st.Spec.Techs)
		info.Site, info.SiteURL = st.Spec.DisplayName, st.Spec.URL
		if info.Site == "" {
			info.Site = st.Name
		}
	}
	return info, true
}

// foreign resolves the full name of a foreign slice.
func (d *Directory) foreign(ctx context.Context, fullName string) (lookup.SliceInfo, bool) {
	a, site, slice, ok := naming.ParseFullName(fullName)
	if !ok {
		return lookup.SliceInfo{}, false
	}
	var s planetv1.Slice
	key := types.NamespacedName{Namespace: naming.AuthorityNamespace(a), Name: naming.ForeignSliceName(site, slice)}
	if err := d.Reader.Get(ctx, key, &s); err != nil || s.Annotations[planetv1.AnnotationSliceFullName] != fullName {
		return lookup.SliceInfo{}, false
	}
	return lookup.SliceInfo{FullName: fullName, Description: s.Spec.Description, URL: s.Spec.URL}, true
}

// FullName is the full name of a slice of this authority.
func (d *Directory) FullName(site, slice string) string {
	return naming.FullName(d.Authority, site, slice)
}

func (d *Directory) split(fullName string) (site, slice string, ok bool) {
	a, site, slice, ok := naming.ParseFullName(fullName)
	if !ok || a != d.Authority {
		return "", "", false
	}
	return site, slice, true
}

// contacts are the people a complaint about a slice of this site goes to:
// its PIs, then its techs (users and groups, by name, without repeats).
func contacts(site *planetv1.Site) []string {
	out := names(site.Spec.PIs)
	for _, n := range names(site.Spec.Techs) {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// names are the people of a list, by name, without service accounts or
// repeats.
func names(list []planetv1.Subject) []string {
	var out []string
	for _, s := range list {
		if s.Kind != planetv1.SubjectServiceAccount && !slices.Contains(out, s.Name) {
			out = append(out, s.Name)
		}
	}
	return out
}

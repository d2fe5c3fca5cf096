package admission

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/pools"
	"github.com/planetkube/planetkube/internal/trust"
)

// +kubebuilder:webhook:path=/validate-planetkube-io-v1alpha1-resourcepool,mutating=false,failurePolicy=ignore,sideEffects=None,groups=planetkube.io,resources=resourcepools,verbs=create;update;delete,versions=v1alpha1,name=vresourcepool.planetkube.io,admissionReviewVersions=v1,timeoutSeconds=5

// ResourcePoolValidator refuses at admission what the ResourcePool
// controller would otherwise only settle afterwards (by marking the pool
// Invalid or Overcommitted):
//
//   - a root pool over nodes that are not its site's, or over no node;
//   - a sub-pool whose parent does not exist, or whose nodes are not its
//     parent's;
//   - a pool that does not fit: the accounting is done as the controller does
//     it, with the new or changed pool judged last (existing pools keep their
//     precedence), so the message names the first node and resource that
//     does not fit;
//   - a change that would make another pool stop contributing (a parent
//     shrunk below what its sub-pools hold);
//   - a new or changed binding to a slice that does not exist, or whose end
//     is not in the future;
//   - a new or changed allocation to an authority that the pool's site does
//     not trust (Site spec.trustedAuthorities, or the install's default).
//
// Deleting a pool that still has sub-pools, or whose binding is still
// active, is refused rather than cascaded: a reservation bound to a slice
// never disappears as a side effect, and sub-pools are deleted explicitly
// first (or the binding removed). Deletions while the namespace itself is
// being deleted are always allowed, so that a site can go away.
//
// Two creations racing each other can both pass; the controller settles
// that (the later pool is Overcommitted). The controller settles every rule
// above the same way (Invalid, Overcommitted; a sub-pool whose parent went
// is Invalid and holds nothing), so the webhook fails open (failurePolicy
// Ignore): a manager that is down never blocks pool writes, finalizer
// removals or a site's deletion.
type ResourcePoolValidator struct {
	// Client reads nodes; the manager's cache is fine (nodes change rarely
	// and the pool controller watches them).
	Client client.Reader
	// APIReader reads pools, slices and namespaces from the API server, so
	// that a parent or a slice created just before is seen. nil: Client.
	APIReader client.Reader
	// Now returns the current time; tests may set it.
	Now func() time.Time
	// Trust is the install's trust policy, for allocations to authorities.
	Trust trust.Policy
}

var _ admission.Validator[*planetv1.ResourcePool] = &ResourcePoolValidator{}

// SetupWithManager registers the webhook with the manager's webhook server.
func (v *ResourcePoolValidator) SetupWithManager(mgr ctrl.Manager) error {
	if v.Now == nil {
		v.Now = time.Now
	}
	if v.APIReader == nil {
		v.APIReader = v.Client
	}
	return ctrl.NewWebhookManagedBy(mgr, &planetv1.ResourcePool{}).WithValidator(v).Complete()
}

// ValidateCreate checks a new pool.
func (v *ResourcePoolValidator) ValidateCreate(ctx context.Context, p *planetv1.ResourcePool) (admission.Warnings, error) {
	return nil, v.validate(ctx, nil, p)
}

// ValidateUpdate checks a pool whose spec changes; other changes (labels,
// finalizers, a deletion in progress) always pass.
func (v *ResourcePoolValidator) ValidateUpdate(ctx context.Context, old, p *planetv1.ResourcePool) (admission.Warnings, error) {
	if p.DeletionTimestamp != nil || equality.Semantic.DeepEqual(old.Spec, p.Spec) {
		return nil, nil
	}
	return nil, v.validate(ctx, old, p)
}

// ValidateDelete refuses to delete a pool that has sub-pools or an active
// binding, unless its namespace is being deleted.
func (v *ResourcePoolValidator) ValidateDelete(ctx context.Context, p *planetv1.ResourcePool) (admission.Warnings, error) {
	ns := &corev1.Namespace{}
	if err := v.APIReader.Get(ctx, types.NamespacedName{Name: p.Namespace}, ns); err == nil && ns.DeletionTimestamp != nil {
		return nil, nil
	}
	children := &planetv1.ResourcePoolList{}
	if err := v.APIReader.List(ctx, children, client.InNamespace(p.Namespace)); err != nil {
		return nil, fmt.Errorf("listing the pools of %s: %w", p.Namespace, err)
	}
	for i := range children.Items {
		if c := &children.Items[i]; c.Spec.Parent == p.Name {
			return nil, forbidden(p, fmt.Sprintf("pool %s still has sub-pool %s: delete its sub-pools first", p.Name, c.Name))
		}
	}
	if b := p.Spec.Binding; b != nil && b.Authority != "" && (b.Until.IsZero() || v.Now().Before(b.Until.Time)) {
		return nil, forbidden(p, fmt.Sprintf("the pool is allocated to authority %s: remove the binding first, which returns its slivers to the shared part", b.Authority))
	}
	if b := p.Spec.Binding; b != nil && v.Now().Before(b.Until.Time) {
		return nil, forbidden(p, fmt.Sprintf("the binding to %s runs until %s: remove the binding first", b.Slice, b.Until.UTC().Format(time.RFC3339)))
	}
	return nil, nil
}

// validate checks a new pool (old == nil) or a changed one.
func (v *ResourcePoolValidator) validate(ctx context.Context, old, p *planetv1.ResourcePool) error {
	errs, err := v.checkBinding(ctx, old, p)
	if err != nil {
		return err
	}
	if p.Spec.Parent != "" {
		fe, err := v.checkParent(ctx, p)
		if err != nil {
			return err
		}
		if fe != nil {
			return invalid("ResourcePool", p.Name, append(errs, fe))
		}
	}
	fe, err := v.checkAccounting(ctx, old != nil, p)
	if err != nil {
		return err
	}
	if fe != nil {
		errs = append(errs, fe)
	}
	if len(errs) > 0 {
		return invalid("ResourcePool", p.Name, errs)
	}
	return nil
}

// checkParent says why a sub-pool's parent cannot be used: it does not
// exist in the pool's namespace.
func (v *ResourcePoolValidator) checkParent(ctx context.Context, p *planetv1.ResourcePool) (*field.Error, error) {
	parent := &planetv1.ResourcePool{}
	err := v.APIReader.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: p.Spec.Parent}, parent)
	switch {
	case apierrors.IsNotFound(err):
		return field.Invalid(field.NewPath("spec", "parent"), p.Spec.Parent,
			fmt.Sprintf("parent pool %s not found in namespace %s: create the parent first", p.Spec.Parent, p.Namespace)), nil
	case err != nil:
		return nil, fmt.Errorf("reading parent pool %s: %w", p.Spec.Parent, err)
	}
	return nil, nil
}

// checkBinding checks a binding that is new or changed: the slice exists and
// the end is in the future. An unchanged binding passes, even once expired.
func (v *ResourcePoolValidator) checkBinding(ctx context.Context, old, p *planetv1.ResourcePool) (field.ErrorList, error) {
	b := p.Spec.Binding
	if b == nil {
		return nil, nil
	}
	var was planetv1.PoolBinding
	if old != nil && old.Spec.Binding != nil {
		was = *old.Spec.Binding
	}
	path := field.NewPath("spec", "binding")
	var errs field.ErrorList
	if !b.Until.Equal(&was.Until) && !b.Until.IsZero() && !v.Now().Before(b.Until.Time) {
		errs = append(errs, field.Invalid(path.Child("until"), b.Until.UTC().Format(time.RFC3339), "is not in the future"))
	}
	if b.Authority != "" && b.Authority != was.Authority {
		fe, err := v.checkTrusted(ctx, p.Namespace, b.Authority)
		if err != nil {
			return nil, err
		}
		if fe != nil {
			errs = append(errs, fe)
		}
	}
	if b.Slice != "" && b.Slice != was.Slice {
		found, err := v.sliceExists(ctx, b.Slice)
		if err != nil {
			return nil, err
		}
		if !found {
			errs = append(errs, field.Invalid(path.Child("slice"), b.Slice, fmt.Sprintf("slice %s not found", b.Slice)))
		}
	}
	return errs, nil
}

// checkTrusted says why site may not allocate to authority: the Site does
// not trust it (a namespace with no Site object trusts no one but the local
// authority, as its nodes run only local slices).
func (v *ResourcePoolValidator) checkTrusted(ctx context.Context, site, authority string) (*field.Error, error) {
	s := &planetv1.Site{}
	err := v.APIReader.Get(ctx, types.NamespacedName{Name: site}, s)
	switch {
	case apierrors.IsNotFound(err):
		s = nil
	case err != nil:
		return nil, fmt.Errorf("reading site %s: %w", site, err)
	}
	if v.Trust.MayAllocate(s, authority) {
		return nil, nil
	}
	return field.Forbidden(field.NewPath("spec", "binding", "authority"), fmt.Sprintf(
		"site %s does not trust authority %s (Site spec.trustedAuthorities): trust it first, then allocate to it", site, authority)), nil
}

// sliceExists says whether the slice "<namespace>/<name>" exists.
func (v *ResourcePoolValidator) sliceExists(ctx context.Context, key string) (bool, error) {
	ns, name, _ := strings.Cut(key, "/")
	err := v.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &planetv1.Slice{})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading slice %s: %w", key, err)
	}
	return true, nil
}

// checkAccounting does the accounting with p added (or replacing its old
// version) and judged last, and says why p does not fit; on an update, also
// which other pool it would stop from contributing.
func (v *ResourcePoolValidator) checkAccounting(ctx context.Context, update bool, p *planetv1.ResourcePool) (*field.Error, error) {
	in, err := v.readAccounting(ctx)
	if err != nil {
		return nil, err
	}
	key := pools.KeyOf(p)
	now := v.Now()
	verdict := pools.Judge(in.specs, in.nodes, in.capacity, pools.SpecOf(p), now)
	switch verdict.Fault {
	case "":
	case pools.FaultSpec:
		return field.Forbidden(field.NewPath("spec"), verdict.Why), nil
	default:
		return field.Forbidden(field.NewPath("spec", verdict.Fault), verdict.Why), nil
	}
	if !update {
		return nil, nil
	}
	before := pools.Account(pools.Resolve(in.specs, in.nodes), in.capacity, now)
	return harmed(key, before, verdict.After), nil
}

// harmed names the first pool (by key) other than key that held a node in
// before and no longer does in after, and why it lost the first such node.
func harmed(key string, before, after pools.Result) *field.Error {
	k, why := "", ""
	for _, pk := range slices.Sorted(maps.Keys(before.Pools)) {
		r := after.Pools[pk]
		if pk == key || r == nil {
			continue
		}
		for _, n := range slices.Sorted(maps.Keys(before.Pools[pk].Nodes)) {
			if !r.Holds(n) {
				k, why = pk, r.Invalid+r.Lost[n]
				break
			}
		}
		if k != "" {
			break
		}
	}
	if k == "" {
		return nil
	}
	return field.Forbidden(field.NewPath("spec"), fmt.Sprintf("the change would take pool %s out of service (%s): shrink or delete it first", k, why))
}

// accountingInput is what the accounting reads from the cluster.
type accountingInput struct {
	specs    []pools.Spec
	nodes    []pools.NodeInfo
	capacity pools.Capacity
}

// readAccounting reads every pool and every site node.
func (v *ResourcePoolValidator) readAccounting(ctx context.Context) (accountingInput, error) {
	list := &planetv1.ResourcePoolList{}
	if err := v.APIReader.List(ctx, list); err != nil {
		return accountingInput{}, fmt.Errorf("listing resource pools: %w", err)
	}
	nodes := &corev1.NodeList{}
	if err := v.Client.List(ctx, nodes, client.HasLabels{planetv1.LabelSite}); err != nil {
		return accountingInput{}, fmt.Errorf("listing nodes: %w", err)
	}
	in := accountingInput{specs: make([]pools.Spec, len(list.Items))}
	for i := range list.Items {
		in.specs[i] = pools.SpecOf(&list.Items[i])
	}
	in.nodes, in.capacity = pools.NodesOf(nodes.Items)
	return in, nil
}

// forbidden refuses an operation on a pool, saying why.
func forbidden(p *planetv1.ResourcePool, why string) error {
	return apierrors.NewForbidden(planetv1.GroupVersion.WithResource("resourcepools").GroupResource(), p.Name, errors.New(why))
}

// invalid refuses an object of kind for the field errors.
func invalid(kind, name string, errs field.ErrorList) error {
	return apierrors.NewInvalid(planetv1.GroupVersion.WithKind(kind).GroupKind(), name, errs)
}

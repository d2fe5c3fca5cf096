package controllers

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/authority"
	"github.com/planetkube/planetkube/internal/federation/pull"
	"github.com/planetkube/planetkube/internal/health"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/ticket"
)

// AuthorityReconciler keeps an Authority's status (its valid keys, the
// foreign slices it runs here) and, when the Authority is deleted, removes
// everything it and its delegates run here: the namespaces of their slices
// and the parts of pools their tickets made. The install's own Authority
// is kept as its key Secret says: its keys are the Secret's public half
// alone (a key added by hand would let its holder sign as this install),
// and it is published again if deleted.
type AuthorityReconciler struct {
	client.Client
	Recorder events.EventRecorder
	// Local is this install's authority, and Signer its key: they keep
	// the install's own Authority (unset: not kept).
	Local  string
	Signer *authority.SignerSource
	// Poller, when set, reads peers' feeds and checks their push
	// kubeconfigs, every pollIntervalSeconds plus jitter.
	Poller *pull.Poller
	// Now returns the current time; tests may set it.
	Now func() time.Time
}

// +kubebuilder:rbac:groups=planetkube.io,resources=authorities,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=planetkube.io,resources=authorities/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=planetkube.io,resources=authorities/finalizers,verbs=update

// Reconcile writes the Authority's status, or removes its slices when it
// is deleted.
func (r *AuthorityReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	a := &planetv1.Authority{}
	if err := r.Get(ctx, req.NamespacedName, a); err != nil {
		if apierrors.IsNotFound(err) && req.Name == r.Local && r.Signer != nil {
			return ctrl.Result{}, r.republish(ctx)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !a.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, a)
	}
	if !controllerutil.ContainsFinalizer(a, planetv1.AuthorityFinalizer) {
		if err := setFinalizer(ctx, r.Client, a, planetv1.AuthorityFinalizer, true); err != nil {
			return ctrl.Result{}, err
		}
	}
	if a.Name == r.Local && r.Signer != nil {
		if err := r.keepOwnKeys(ctx, a); err != nil {
			return ctrl.Result{}, err
		}
	}
	old := a.DeepCopy()
	var res ctrl.Result
	if r.Poller != nil && r.Poller.Due(a, r.Now()) {
		r.Poller.Poll(ctx, r.Client, a, r.Now())
	}
	if a.Spec.FeedURL == "" {
		// Pulling stopped: Tickets pulled before stay until they expire
		// (delete the Authority to remove what it runs here).
		meta.RemoveStatusCondition(&a.Status.Conditions, planetv1.ConditionFeedSynced)
		a.Status.FeedTickets = 0
	}
	if a.Spec.Push == nil {
		meta.RemoveStatusCondition(&a.Status.Conditions, planetv1.ConditionPushReady)
	}
	if a.Spec.FeedURL == "" && a.Spec.Push == nil {
		a.Status.NextPollTime = nil
	}
	if next := a.Status.NextPollTime; next != nil && (a.Spec.FeedURL != "" || a.Spec.Push != nil) {
		res.RequeueAfter = max(time.Second, next.Sub(r.Now()))
	}
	slices, err := r.countSlices(ctx, a.Name)
	defer func() {
		st := &a.Status
		st.ObservedGeneration = a.Generation
		st.ValidKeys = int32(len(authority.ValidKeys(a)))
		if err == nil {
			st.Slices = slices
		}
		status, reason, msg := metav1.ConditionTrue, planetv1.ReasonKeysValid, fmt.Sprintf("%d of %d keys verify tickets", st.ValidKeys, len(a.Spec.Keys))
		if st.ValidKeys == 0 {
			status, reason = metav1.ConditionFalse, planetv1.ReasonNoValidKeys
			msg = "no key decodes as an Ed25519 public key whose id is its own (the first 16 hex characters of its SHA-256): no ticket of this authority verifies"
		}
		health.Set(&st.Conditions, metav1.Condition{Status: status, Reason: reason, Message: msg, ObservedGeneration: a.Generation}, health.AuthorityRules)
		retErr = errors.Join(retErr, patchStatus(ctx, r.Client, old, a, &old.Status, &a.Status))
	}()
	return res, err
}

// countSlices counts the foreign slices of the authority and its delegates.
func (r *AuthorityReconciler) countSlices(ctx context.Context, name string) (int32, error) {
	list := &planetv1.SliceList{}
	if err := r.List(ctx, list, client.HasLabels{planetv1.LabelAuthority}, client.UnsafeDisableDeepCopy); err != nil {
		return 0, err
	}
	var n int32
	for i := range list.Items {
		if naming.WithinAuthority(list.Items[i].Labels[planetv1.LabelAuthority], name) && list.Items[i].DeletionTimestamp.IsZero() {
			n++
		}
	}
	return n, nil
}

// keepOwnKeys makes the install's own Authority list exactly the public
// half of its key Secret, and says so (a warning event, a log line) when it
// removes keys someone added: whoever holds such a key could sign tickets
// and delegations as this install. The patch holds only if the Authority
// is unchanged since it was read.
func (r *AuthorityReconciler) keepOwnKeys(ctx context.Context, a *planetv1.Authority) error {
	signer, err := r.Signer.Signer(ctx)
	if err != nil {
		return nil // no key yet: the Bootstrap makes it and publishes it
	}
	want := planetv1.AuthorityKey{ID: signer.KeyID, PublicKey: ticket.EncodePublicKey(signer.Key.Public().(ed25519.PublicKey))}
	if len(a.Spec.Keys) == 1 && a.Spec.Keys[0] == want {
		return nil
	}
	var removed []string
	for _, k := range a.Spec.Keys {
		if k != want {
			removed = append(removed, k.ID)
		}
	}
	patch := client.MergeFromWithOptions(a.DeepCopy(), client.MergeFromWithOptimisticLock{})
	a.Spec.Keys = []planetv1.AuthorityKey{want}
	if err := r.Patch(ctx, a, patch); err != nil {
		return fmt.Errorf("correcting the keys of this install's Authority %s: %w", a.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("Corrected this install's own Authority: its keys are its key Secret's alone", "authority", a.Name, "removed", removed, "keyID", want.ID)
	r.Recorder.Eventf(a, nil, corev1.EventTypeWarning, planetv1.ReasonKeysCorrected, "Correct",
		"removed keys %s: this install's own Authority lists only the public half of its key Secret (%s)", strings.Join(removed, ", "), want.ID)
	return nil
}

// republish publishes the install's own Authority again after someone
// deleted it.
func (r *AuthorityReconciler) republish(ctx context.Context) error {
	signer, err := r.Signer.Signer(ctx)
	if err != nil {
		return nil // no key yet: the Bootstrap makes it and publishes it
	}
	if err := authority.Publish(ctx, r.Client, r.Client, r.Local, "", signer.Key.Public().(ed25519.PublicKey)); err != nil {
		return err
	}
	ctrl.LoggerFrom(ctx).Info("Published this install's own Authority again: it was deleted", "authority", r.Local)
	return nil
}

// finalize deletes the namespaces of the authority's and its delegates'
// slices and the pool parts their tickets made, and releases the Authority
// once they are gone (their deletion queues it again). The install's own
// Authority takes nothing with it: it is published again.
func (r *AuthorityReconciler) finalize(ctx context.Context, a *planetv1.Authority) error {
	if !controllerutil.ContainsFinalizer(a, planetv1.AuthorityFinalizer) {
		return nil
	}
	if a.Name == r.Local {
		return setFinalizer(ctx, r.Client, a, planetv1.AuthorityFinalizer, false)
	}
	if err := r.deletePoolParts(ctx, a.Name); err != nil {
		return err
	}
	list := &corev1.NamespaceList{}
	if err := r.List(ctx, list, client.MatchingLabels{planetv1.LabelManagedBy: planetv1.ManagedByValue}, client.HasLabels{planetv1.LabelAuthority}); err != nil {
		return err
	}
	remaining := 0
	for i := range list.Items {
		ns := &list.Items[i]
		if !naming.WithinAuthority(ns.Labels[planetv1.LabelAuthority], a.Name) {
			continue
		}
		remaining++
		if ns.DeletionTimestamp.IsZero() {
			if err := r.Delete(ctx, ns); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("deleting namespace %s of authority %s: %w", ns.Name, a.Name, err)
			}
			ctrl.LoggerFrom(ctx).Info("Deleted the namespace of a deleted authority's slices", "namespace", ns.Name, "authority", a.Name)
		}
	}
	if remaining > 0 {
		return nil // the namespaces' deletion queues the Authority again
	}
	return setFinalizer(ctx, r.Client, a, planetv1.AuthorityFinalizer, false)
}

// deletePoolParts deletes the parts of pools (in the sites' namespaces)
// that tickets of the authority or its delegates made.
func (r *AuthorityReconciler) deletePoolParts(ctx context.Context, name string) error {
	list := &planetv1.ResourcePoolList{}
	if err := r.List(ctx, list, client.MatchingLabels{planetv1.LabelManagedBy: planetv1.ManagedByValue}, client.HasLabels{planetv1.LabelAuthority}); err != nil {
		return err
	}
	for i := range list.Items {
		p := &list.Items[i]
		if !naming.WithinAuthority(p.Labels[planetv1.LabelAuthority], name) || !p.DeletionTimestamp.IsZero() {
			continue
		}
		if err := r.Delete(ctx, p); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting pool part %s/%s of authority %s: %w", p.Namespace, p.Name, name, err)
		}
		ctrl.LoggerFrom(ctx).Info("Deleted a pool part of a deleted authority", "pool", p.Namespace+"/"+p.Name, "authority", name)
	}
	return nil
}

// authoritiesOf maps an object labelled with an authority (plc.japan) to the
// Authorities that cover it: plc.japan and plc.
func authoritiesOf(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[planetv1.LabelAuthority]
	if name == "" || o.GetLabels()[planetv1.LabelManagedBy] != planetv1.ManagedByValue {
		return nil
	}
	var out []reconcile.Request
	for {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Name: name}})
		i := strings.LastIndexByte(name, '.')
		if i < 0 {
			return out
		}
		name = name[:i]
	}
}

// SetupWithManager registers the controller: foreign slices created or
// deleted change the count; authority namespaces deleted release a deleted
// Authority.
func (r *AuthorityReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Now == nil {
		r.Now = time.Now
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&planetv1.Authority{}).
		// A slow feed must not hold the others' polls.
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Watches(&planetv1.Slice{}, handler.EnqueueRequestsFromMapFunc(authoritiesOf), builder.WithPredicates(createOrDelete)).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(authoritiesOf), builder.WithPredicates(createOrDelete)).
		Complete(r)
}

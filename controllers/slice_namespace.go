package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
)

const (
	// annotationKeysHash on a slice namespace records the authorized_keys
	// last written to its Secret, so the manager needs neither get nor watch
	// on Secrets.
	annotationKeysHash = "planetkube.io/authorized-keys-hash"
	// authorizedKeysFile is the key of the Secret's data.
	authorizedKeysFile = "authorized_keys"
	fieldOwner         = "planetkube"
)

// sliceLabels are the labels of everything a slice owns.
func sliceLabels(slice *planetv1.Slice) map[string]string {
	return map[string]string{
		planetv1.LabelSite:      slice.Namespace,
		planetv1.LabelSlice:     slice.Name,
		planetv1.LabelManagedBy: planetv1.ManagedByValue,
	}
}

// ownsNamespace says whether a namespace is this slice's.
func ownsNamespace(slice *planetv1.Slice, ns *corev1.Namespace) bool {
	l := ns.Labels
	return l[planetv1.LabelManagedBy] == planetv1.ManagedByValue && l[planetv1.LabelSite] == slice.Namespace && l[planetv1.LabelSlice] == slice.Name
}

// authorizedKeys renders the users' keys as an authorized_keys file, each
// user's keys under a comment naming the user, and returns its hash.
func authorizedKeys(slice *planetv1.Slice) (string, string) {
	var b strings.Builder
	for _, u := range slice.Spec.Users {
		fmt.Fprintf(&b, "# %s\n", u.Name)
		for _, k := range u.SSHKeys {
			b.WriteString(strings.TrimSpace(k))
			b.WriteByte('\n')
		}
	}
	sum := sha256.Sum256([]byte(b.String()))
	return b.String(), hex.EncodeToString(sum[:8])
}

// namespaceMeta is the slice namespace's desired labels and annotations.
func (r *SliceReconciler) namespaceMeta(slice *planetv1.Slice, id sliceIdentity, keysHash string) (labels, annotations map[string]string) {
	level := "baseline"
	if slice.Spec.PodSecurity == planetv1.PodSecurityRestricted {
		level = "restricted"
	}
	labels = sliceLabels(slice)
	labels["pod-security.kubernetes.io/enforce"] = level
	labels["pod-security.kubernetes.io/enforce-version"] = "latest"
	labels["pod-security.kubernetes.io/warn"] = "restricted"
	labels["pod-security.kubernetes.io/warn-version"] = "latest"
	annotations = map[string]string{
		planetv1.AnnotationSliceFullName: id.fullName(),
		annotationKeysHash:               keysHash,
	}
	return labels, annotations
}

// ensureSliceNamespace creates or updates the slice namespace, the Secret
// with the users' authorized_keys and the users' RoleBinding, and returns the
// namespace.
func (r *SliceReconciler) ensureSliceNamespace(ctx context.Context, slice *planetv1.Slice, id sliceIdentity) (*corev1.Namespace, error) {
	name := id.namespace()
	keys, keysHash := authorizedKeys(slice)
	labels, annotations := r.namespaceMeta(slice, id, keysHash)

	ns := &corev1.Namespace{}
	err := r.Get(ctx, types.NamespacedName{Name: name}, ns)
	switch {
	case apierrors.IsNotFound(err):
		ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
		if err := r.Create(ctx, ns); err != nil {
			return nil, &stepError{reason: planetv1.ReasonNamespaceFailed, err: fmt.Errorf("creating slice namespace %s: %w", name, err)}
		}
		ctrl.LoggerFrom(ctx).Info("Created slice namespace", "namespace", name)
	case err != nil:
		return nil, &stepError{reason: planetv1.ReasonNamespaceFailed, err: err}
	case !ownsNamespace(slice, ns):
		return nil, &conflictError{fmt.Sprintf("namespace %s exists and is not this slice's", name)}
	case !ns.DeletionTimestamp.IsZero():
		return nil, &stepError{reason: planetv1.ReasonNamespaceTerminating,
			err: fmt.Errorf("slice namespace %s is being deleted; it is made again once it is gone", name)}
	}

	if ns.Annotations[annotationKeysHash] != keysHash {
		if err := r.applyKeys(ctx, slice, id, keys); err != nil {
			return nil, &stepError{reason: planetv1.ReasonAccessFailed, err: err}
		}
	}
	users := make([]planetv1.Subject, 0, len(slice.Spec.Users))
	for _, u := range slice.Spec.Users {
		users = append(users, planetv1.Subject{Kind: planetv1.SubjectUser, Name: u.Name})
	}
	rb := roleBinding(naming.SliceUsersRoleBinding, name, naming.SliceUserClusterRole, rbacSubjects(users), sliceLabels(slice))
	if err := ensureRoleBinding(ctx, r.Client, rb); err != nil {
		return nil, &stepError{reason: planetv1.ReasonAccessFailed, err: err}
	}

	if mapsContain(ns.Labels, labels) && mapsContain(ns.Annotations, annotations) {
		return ns, nil
	}
	patch := client.MergeFrom(ns.DeepCopy())
	ns.Labels = mergeMaps(ns.Labels, labels)
	ns.Annotations = mergeMaps(ns.Annotations, annotations)
	if err := r.Patch(ctx, ns, patch); err != nil {
		return nil, &stepError{reason: planetv1.ReasonNamespaceFailed, err: fmt.Errorf("updating slice namespace %s: %w", name, err)}
	}
	return ns, nil
}

// applyKeys writes the Secret with the users' authorized_keys (server-side
// apply: it creates the Secret or brings it back to what it must hold).
func (r *SliceReconciler) applyKeys(ctx context.Context, slice *planetv1.Slice, id sliceIdentity, keys string) error {
	secret := corev1ac.Secret(naming.AuthorizedKeysSecret, id.namespace()).
		WithLabels(sliceLabels(slice)).
		WithType(corev1.SecretTypeOpaque).
		WithStringData(map[string]string{authorizedKeysFile: keys})
	if err := r.Apply(ctx, secret, client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("writing the authorized_keys secret: %w", err)
	}
	r.keysWritten.Store(slice.UID, time.Now())
	return nil
}

// keysDue says whether new slivers write the slice's keys Secret again
// (KeysRecheck): the wall clock, not r.Now, since it paces writes.
func (r *SliceReconciler) keysDue(slice *planetv1.Slice) bool {
	if r.KeysRecheck <= 0 {
		return true
	}
	last := r.started
	if v, ok := r.keysWritten.Load(slice.UID); ok {
		last = v.(time.Time)
	}
	return time.Since(last) >= r.KeysRecheck
}

// mapsContain says whether have holds every key of want with its value.
func mapsContain(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// mergeMaps returns dst with every entry of src set.
func mergeMaps(dst, src map[string]string) map[string]string {
	if dst == nil {
		dst = make(map[string]string, len(src))
	}
	for k, v := range src {
		dst[k] = v
	}
	return dst
}

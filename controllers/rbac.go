package controllers

import (
	"context"
	"errors"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
)

// conflictError says that an object PlanetKube wants to own belongs to
// someone else; it becomes a condition, not a retry loop.
type conflictError struct{ msg string }

func (e *conflictError) Error() string { return e.msg }

func errorsAs[T error](err error, target *T) bool { return err != nil && errors.As(err, target) }

// createOrDelete passes only creations and deletions (for counts).
var createOrDelete = predicate.Funcs{
	UpdateFunc: func(event.UpdateEvent) bool { return false },
}

// rbacSubjects converts PlanetKube subjects to RBAC subjects.
func rbacSubjects(in []planetv1.Subject) []rbacv1.Subject {
	out := make([]rbacv1.Subject, 0, len(in))
	for _, s := range in {
		kind := s.Kind
		if kind == "" {
			kind = planetv1.SubjectUser
		}
		sub := rbacv1.Subject{Kind: string(kind), Name: s.Name, Namespace: s.Namespace}
		if kind != planetv1.SubjectServiceAccount {
			sub.APIGroup = rbacv1.GroupName
		}
		out = append(out, sub)
	}
	return out
}

// roleBinding builds a RoleBinding of a ClusterRole in a namespace.
func roleBinding(name, namespace, clusterRole string, subjects []rbacv1.Subject, labels map[string]string) *rbacv1.RoleBinding {
	l := map[string]string{planetv1.LabelManagedBy: planetv1.ManagedByValue}
	for k, v := range labels {
		l[k] = v
	}
	return &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: l},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
		Subjects:   subjects,
	}
}

// ensureRoleBinding creates the binding or brings its subjects and labels to
// what is wanted; a binding to another role is replaced (roleRef is immutable).
func ensureRoleBinding(ctx context.Context, c client.Client, want *rbacv1.RoleBinding) error {
	have := &rbacv1.RoleBinding{}
	err := c.Get(ctx, client.ObjectKeyFromObject(want), have)
	switch {
	case apierrors.IsNotFound(err):
		if err := c.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating role binding %s/%s: %w", want.Namespace, want.Name, err)
		}
		return nil
	case err != nil:
		return err
	case have.RoleRef != want.RoleRef:
		if err := c.Delete(ctx, have); client.IgnoreNotFound(err) != nil {
			return err
		}
		return c.Create(ctx, want)
	case equality.Semantic.DeepEqual(have.Subjects, want.Subjects) && equality.Semantic.DeepEqual(have.Labels, want.Labels) &&
		equality.Semantic.DeepEqual(have.OwnerReferences, want.OwnerReferences):
		return nil
	}
	patch := client.MergeFrom(have.DeepCopy())
	have.Subjects, have.Labels, have.OwnerReferences = want.Subjects, want.Labels, want.OwnerReferences
	if err := c.Patch(ctx, have, patch); err != nil {
		return fmt.Errorf("updating role binding %s/%s: %w", want.Namespace, want.Name, err)
	}
	return nil
}

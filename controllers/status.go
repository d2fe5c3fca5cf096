package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// patchStatus writes obj's status when it changed since old was read
// (oldStatus and status are the two statuses, or the part of them a
// controller owns, compared by equality.Semantic), as a merge patch from
// old: a converged object costs no write. An object deleted meanwhile has no
// status to write, which is not an error. Every reconciler calls it on every
// exit, errors included, from a deferred function.
func patchStatus(ctx context.Context, c client.Client, old, obj client.Object, oldStatus, status any) error {
	if equality.Semantic.DeepEqual(oldStatus, status) {
		return nil
	}
	if err := c.Status().Patch(ctx, obj, client.MergeFrom(old)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("patching the status of %s: %w", client.ObjectKeyFromObject(obj), err)
	}
	return nil
}

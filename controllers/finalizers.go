package controllers

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// setFinalizer adds (or removes) a finalizer with a patch that holds only
// if the object is unchanged since it was read: a Slice carries two
// controllers' finalizers, and a patch made from a stale copy would drop the
// other's (or, once deleting, add it back, which the API server refuses). A
// conflict is returned, to be retried on a fresh copy; an object already
// gone is not an error.
func setFinalizer(ctx context.Context, c client.Client, obj client.Object, finalizer string, add bool) error {
	patch := client.MergeFromWithOptions(obj.DeepCopyObject().(client.Object), client.MergeFromWithOptimisticLock{})
	if add {
		controllerutil.AddFinalizer(obj, finalizer)
	} else {
		controllerutil.RemoveFinalizer(obj, finalizer)
	}
	if err := c.Patch(ctx, obj, patch); client.IgnoreNotFound(err) != nil {
		verb := "adding"
		if !add {
			verb = "removing"
		}
		return fmt.Errorf("%s finalizer %s: %w", verb, finalizer, err)
	}
	return nil
}

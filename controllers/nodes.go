package controllers

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/planetkube/planetkube/internal/clusterview"
)

// nodeReady returns whether the node's Ready condition is True, and the
// condition's reason and message when it is not.
var nodeReady = clusterview.NodeReady

// nodeChanged passes node events that can change placement or site counts:
// create, delete, and updates of labels, schedulability, readiness or
// allocatable. Heartbeats, which only move timestamps, are dropped.
var nodeChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, okO := e.ObjectOld.(*corev1.Node)
		n, okN := e.ObjectNew.(*corev1.Node)
		if !okO || !okN {
			return true
		}
		or, _, _ := nodeReady(o)
		nr, _, _ := nodeReady(n)
		return or != nr ||
			o.Spec.Unschedulable != n.Spec.Unschedulable ||
			!equality.Semantic.DeepEqual(o.Labels, n.Labels) ||
			!equality.Semantic.DeepEqual(o.Status.Allocatable, n.Status.Allocatable)
	},
}

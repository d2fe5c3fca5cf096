package manager

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/clusterview"
)

// CacheOptions scopes the informer cache: only PlanetKube's pods are
// cached, each stripped to what the controllers and the cluster view read
// of it (clusterview.StripSliver), and managed fields are dropped, which
// keeps the manager's memory flat on large clusters.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {
				Label:     labels.SelectorFromSet(labels.Set{planetv1.LabelManagedBy: planetv1.ManagedByValue}),
				Transform: clusterview.StripSliver,
			},
		},
	}
}

// PodCacheOptions scope the view's pod cache: every other pod bound to a
// node and not finished (PlanetKube's own are in the manager's cache, so
// each pod is cached once), stripped to what the view reads
// (clusterview.StripPod).
func PodCacheOptions(mgr ctrl.Manager) cache.Options {
	notOurs, err := labels.Parse(planetv1.LabelManagedBy + "!=" + planetv1.ManagedByValue)
	if err != nil {
		panic(err) // a constant selector
	}
	return cache.Options{
		Scheme: mgr.GetScheme(),
		Mapper: mgr.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {
				Label:     notOurs,
				Field:     fields.ParseSelectorOrDie("spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"),
				Transform: clusterview.StripPod,
			},
		},
	}
}

// everyReplica makes the manager start a cache with its own, on every
// replica and before the runnables that read it (a bare cache.Cache would
// start on the leader only).
type everyReplica struct{ cache.Cache }

// GetCache puts it in the manager's group of caches.
func (c everyReplica) GetCache() cache.Cache { return c.Cache }

// FederationSecretCacheOptions scope the cache of the Secrets that hold the
// home slices' tickets for their peers: those of the manager's namespace
// with their label, and no other Secret.
func FederationSecretCacheOptions(mgr ctrl.Manager, namespace string) cache.Options {
	return cache.Options{
		Scheme:           mgr.GetScheme(),
		Mapper:           mgr.GetRESTMapper(),
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {
				Namespaces: map[string]cache.Config{namespace: {}},
				Label:      labels.SelectorFromSet(labels.Set{planetv1.LabelFederationTickets: "true"}),
			},
		},
	}
}

// Package scheme gives the runtime scheme of PlanetKube's programs: the
// Kubernetes kinds and PlanetKube's own. It is a package of its own so that
// a program (the archiver, a test) gets it without the manager's wiring and
// every controller with it.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
)

// Scheme returns a scheme with the Kubernetes and PlanetKube kinds.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := planetv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

package realnode

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/testing/poll"
)

// crds are the chart's CustomResourceDefinitions.
var crds = []string{"authorities.planetkube.io", "resourcepools.planetkube.io", "sites.planetkube.io", "slices.planetkube.io", "tickets.planetkube.io"}

// testUninstall (the last case: it removes the release): helm uninstall
// takes the release's workloads away (the manager's Deployment and pods,
// the agent's DaemonSet and its pod on the real node) and keeps the CRDs
// (crds.keep, the default), and with them the site's objects.
func testUninstall(ctx context.Context, t *testing.T, e *env) {
	began := time.Now()
	e.helm(t, "uninstall", release, "-n", ns, "--wait", "--timeout", "3m")
	poll.Until(t, "the release's workloads gone", 3*time.Minute, 500*time.Millisecond, func() error {
		var left []string
		if err := e.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "planetkube-manager"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
			left = append(left, fmt.Sprintf("Deployment planetkube-manager (%v)", err))
		}
		if err := e.k8s.Get(ctx, client.ObjectKey{Namespace: agentNS, Name: "planetkube-node-agent"}, &appsv1.DaemonSet{}); !apierrors.IsNotFound(err) {
			left = append(left, fmt.Sprintf("DaemonSet planetkube-node-agent (%v)", err))
		}
		for _, namespace := range []string{ns, agentNS} {
			list := &corev1.PodList{}
			if err := e.k8s.List(ctx, list, client.InNamespace(namespace)); err != nil {
				return err
			}
			for _, p := range list.Items {
				left = append(left, "pod "+p.Namespace+"/"+p.Name)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("left: %s", strings.Join(left, ", "))
		}
		return nil
	})
	t.Logf("Release uninstalled, its pods gone, in %s", time.Since(began).Round(time.Millisecond))
	out, err := e.kubectl(append([]string{"get", "crd", "-o", "name"}, crds...)...)
	if err != nil {
		t.Fatalf("The CRDs after helm uninstall: %v: %s", err, out)
	}
	for _, crd := range crds {
		if !strings.Contains(out, "customresourcedefinition.apiextensions.k8s.io/"+crd) {
			t.Errorf("CRD %s gone after helm uninstall: %s", crd, out)
		}
	}
	if err := e.k8s.Get(ctx, client.ObjectKey{Name: "princeton"}, &planetv1.Site{}); err != nil {
		t.Errorf("Site princeton after helm uninstall: %v", err)
	}
	if out, err := e.run("helm", []string{"status", release, "-n", ns, "--kubeconfig", e.c.Kubeconfig}); err == nil || !strings.Contains(out, "not found") {
		t.Errorf("helm status after uninstall: %v: %s, want the release not found", err, out)
	}
}

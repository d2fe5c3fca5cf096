package e2e

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
)

// gitOpsManager is the field manager a GitOps tool applies with (Flux's
// kustomize-controller's own name).
const gitOpsManager = "kustomize-controller"

var _ = Describe("GitOps: server-side apply of a site and a slice", Ordered, func() {
	var (
		nodes []string
		set   []*unstructured.Unstructured
	)
	object := func(kind, ns, name string, spec map[string]any) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
		u.SetGroupVersionKind(planetv1.GroupVersion.WithKind(kind))
		u.SetNamespace(ns)
		u.SetName(name)
		return u
	}
	// apply applies the whole set as the GitOps tool does (force: it owns
	// what it declares) and returns each object's resourceVersion after.
	apply := func() []string {
		GinkgoHelper()
		var rvs []string
		for _, u := range set {
			Expect(k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(u.DeepCopy()), client.FieldOwner(gitOpsManager), client.ForceOwnership)).To(Succeed())
			live := &unstructured.Unstructured{}
			live.SetGroupVersionKind(u.GroupVersionKind())
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(u), live)).To(Succeed())
			rvs = append(rvs, live.GetResourceVersion())
		}
		return rvs
	}

	BeforeAll(func() {
		nodes = sets.List(nodesOf("berkeley"))[:3]
		set = []*unstructured.Unstructured{
			object("Site", "", "gitops", map[string]any{"displayName": "A site from Git"}),
			object("Slice", "berkeley", "fromgit", map[string]any{
				"description": "a slice from Git",
				"nodes":       map[string]any{"names": []any{nodes[0], nodes[1], nodes[2]}},
				"template":    map[string]any{"image": "registry.k8s.io/pause:3.10"},
			}),
		}
	})

	It("converges, and re-applying changes nothing: no diff, no conflict, no controller write to a spec field", func() {
		first := apply()
		slice := &planetv1.Slice{ObjectMeta: metav1.ObjectMeta{Namespace: "berkeley", Name: "fromgit"}}
		Eventually(runningOn(slice, sets.New(nodes...))).Should(Succeed())
		Eventually(condition(slice, planetv1.ConditionReady)).Should(HaveField("Status", metav1.ConditionTrue))
		site := &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "gitops"}}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(site), site)).To(Succeed())
			g.Expect(site.Status.ObservedGeneration).To(Equal(site.Generation))
		}).Should(Succeed())

		// The controllers wrote statuses and finalizers meanwhile; the
		// GitOps tool's second apply must find nothing to change.
		live := make([]string, len(set))
		for i, u := range set {
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(u.GroupVersionKind())
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(u), got)).To(Succeed())
			live[i] = got.GetResourceVersion()
			Expect(got.GetGeneration()).To(BeNumerically("==", 1), "%s/%s: its spec was written after the apply", u.GetKind(), u.GetName())
			for _, mf := range got.GetManagedFields() {
				if mf.Manager == gitOpsManager {
					continue
				}
				Expect(mf.Subresource == "status" || !strings.Contains(string(mf.FieldsV1.Raw), `"f:spec"`)).To(BeTrue(),
					"%s/%s: manager %s owns spec fields: %s", u.GetKind(), u.GetName(), mf.Manager, mf.FieldsV1.Raw)
			}
		}
		Expect(apply()).To(Equal(live), "re-applying the same set changed the objects (first apply: %v)", first)
	})

	It("prunes: deleting the set's objects removes everything they made", func() {
		sliceNS := naming.SliceNamespace("berkeley", "fromgit")
		for i := len(set) - 1; i >= 0; i-- {
			Expect(client.IgnoreNotFound(k8s.Delete(ctx, set[i].DeepCopy(), client.PropagationPolicy(metav1.DeletePropagationBackground)))).To(Succeed())
		}
		Eventually(func(g Gomega) {
			for _, key := range []client.ObjectKey{{Name: "gitops"}, {Name: sliceNS}} {
				err := k8s.Get(ctx, key, &corev1.Namespace{})
				g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "namespace %s still exists (%v)", key.Name, err)
			}
			pods := &corev1.PodList{}
			g.Expect(k8s.List(ctx, pods, client.MatchingLabels{planetv1.LabelSlice: "fromgit", planetv1.LabelSite: "berkeley"})).To(Succeed())
			g.Expect(pods.Items).To(BeEmpty())
			for _, u := range set {
				got := &unstructured.Unstructured{}
				got.SetGroupVersionKind(u.GroupVersionKind())
				g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(u), got))).To(BeTrue(), "%s %s is still there", u.GetKind(), u.GetName())
			}
		}).WithTimeout(3 * time.Minute).Should(Succeed())
	})
})

package e2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/testing/emulator"
)

// newSlice returns a pause-image Slice of a site, changed by mutate.
func newSlice(site, name string, mutate func(*planetv1.SliceSpec)) *planetv1.Slice {
	s := &planetv1.Slice{
		ObjectMeta: metav1.ObjectMeta{Namespace: site, Name: name},
		Spec:       planetv1.SliceSpec{Template: planetv1.SliverTemplate{Image: "registry.k8s.io/pause:3.10"}},
	}
	if mutate != nil {
		mutate(&s.Spec)
	}
	return s
}

// update re-reads an object, changes it and writes it back, again on a
// conflict.
func update[T client.Object](obj T, change func(T)) {
	GinkgoHelper()
	Eventually(func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		change(obj)
		return k8s.Update(ctx, obj)
	}).Should(Succeed())
}

// condition returns a condition of the slice, read afresh.
func condition(slice *planetv1.Slice, t string) func(Gomega) metav1.Condition {
	return func(g Gomega) metav1.Condition {
		got := &planetv1.Slice{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(slice), got)).To(Succeed())
		c := meta.FindStatusCondition(got.Status.Conditions, t)
		g.Expect(c).NotTo(BeNil())
		return *c
	}
}

var _ = Describe("Slices on the emulated cluster", Ordered, func() {
	It("runs a slice over two sites on exactly their nodes, and follows nodes that come and go", func() {
		slice := newSlice("princeton", "twosites", func(s *planetv1.SliceSpec) {
			s.Nodes.Sites = []string{"princeton", "mit"}
		})
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		want := nodesOf("princeton", "mit")
		Expect(want).To(HaveLen(2 * nodeCount / len(cluster.Sites)))
		Eventually(runningOn(slice, want)).Should(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(slice), slice)).To(Succeed())
			g.Expect(slice.Status.ReadySlivers).To(BeEquivalentTo(want.Len()))
			g.Expect(slice.Status.DesiredSlivers).To(BeEquivalentTo(want.Len()))
			g.Expect(slice.Status.FullName).To(Equal("plc.princeton.twosites"))
		}).Should(Succeed())
		Eventually(condition(slice, planetv1.ConditionReady)).Should(HaveField("Status", metav1.ConditionTrue))

		By("a node added to mit gets a Running sliver")
		extra := emulator.NodeName("mit", 900)
		Expect(cluster.AddNode(ctx, extra, "mit")).To(Succeed())
		want.Insert(extra)
		Eventually(runningOn(slice, want)).Should(Succeed())

		By("a deleted node loses its sliver")
		gone := sets.List(nodesOf("princeton"))[0]
		Expect(cluster.DeleteNode(ctx, gone)).To(Succeed())
		want.Delete(gone)
		Eventually(runningOn(slice, want)).Should(Succeed())
	})

	It("expires a slice's slivers and brings them back on renewal", func() {
		nodes := sets.List(nodesOf("berkeley"))[:3]
		slice := newSlice("berkeley", "brief", func(s *planetv1.SliceSpec) {
			s.Nodes.Names = nodes
			s.ExpiresAt = &metav1.Time{Time: time.Now().Add(8 * time.Second)}
		})
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		Eventually(runningOn(slice, sets.New(nodes...))).Should(Succeed())
		Eventually(condition(slice, planetv1.ConditionExpired), 30*time.Second).Should(HaveField("Status", metav1.ConditionTrue))
		Eventually(runningOn(slice, sets.New[string]())).Should(Succeed())

		By("the API server refuses a renewal past 8 weeks (the manager's webhook)")
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(slice), slice)).To(Succeed())
		slice.Spec.ExpiresAt = &metav1.Time{Time: time.Now().Add(9 * 7 * 24 * time.Hour)}
		err := k8s.Update(ctx, slice)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("more than 8 weeks ahead"))

		update(slice, func(s *planetv1.Slice) { s.Spec.ExpiresAt = &metav1.Time{Time: time.Now().Add(30 * 24 * time.Hour)} })
		Eventually(runningOn(slice, sets.New(nodes...))).Should(Succeed())
		Eventually(condition(slice, planetv1.ConditionExpired)).Should(HaveField("Status", metav1.ConditionFalse))
	})

	It("suspends and resumes a slice, keeping its namespace", func() {
		nodes := sets.List(nodesOf("ethz"))[:4]
		slice := newSlice("ethz", "pausable", func(s *planetv1.SliceSpec) { s.Nodes.Names = nodes })
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		Eventually(runningOn(slice, sets.New(nodes...))).Should(Succeed())

		update(slice, func(s *planetv1.Slice) { s.Spec.State = planetv1.SliceSuspended })
		Eventually(runningOn(slice, sets.New[string]())).Should(Succeed())
		Eventually(condition(slice, planetv1.ConditionSuspended)).Should(HaveField("Status", metav1.ConditionTrue))
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: naming.SliceNamespace("ethz", "pausable"), Name: naming.AuthorizedKeysSecret}, &corev1.Secret{})).To(Succeed())

		update(slice, func(s *planetv1.Slice) { s.Spec.State = planetv1.SliceActive })
		Eventually(runningOn(slice, sets.New(nodes...))).Should(Succeed())
	})

	It("lets a slice's users reach their slice's namespace and no other", func() {
		nodes := sets.List(nodesOf("tokyo"))[:2]
		a := newSlice("tokyo", "alpha", func(s *planetv1.SliceSpec) {
			s.Nodes.Names = nodes
			s.Users = []planetv1.SliceUser{{Name: "alice"}}
		})
		b := newSlice("tokyo", "beta", func(s *planetv1.SliceSpec) {
			s.Nodes.Names = nodes
			s.Users = []planetv1.SliceUser{{Name: "bob"}}
		})
		Expect(k8s.Create(ctx, a)).To(Succeed())
		Expect(k8s.Create(ctx, b)).To(Succeed())
		Eventually(runningOn(a, sets.New(nodes...))).Should(Succeed())
		Eventually(runningOn(b, sets.New(nodes...))).Should(Succeed())

		alice := asUser("alice")
		Eventually(func(g Gomega) {
			pods := &corev1.PodList{}
			g.Expect(alice.List(ctx, pods, client.InNamespace(naming.SliceNamespace("tokyo", "alpha")))).To(Succeed())
			g.Expect(pods.Items).To(HaveLen(2))
		}).Should(Succeed())
		err := alice.List(ctx, &corev1.PodList{}, client.InNamespace(naming.SliceNamespace("tokyo", "beta")))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "alice listing beta's pods: %v", err)
		err = alice.List(ctx, &corev1.PodList{}, client.InNamespace("tokyo"))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "alice listing the site namespace: %v", err)
		err = asUser("bob").List(ctx, &corev1.PodList{}, client.InNamespace(naming.SliceNamespace("tokyo", "alpha")))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "bob listing alpha's pods: %v", err)
	})

	It("leaves nothing behind when a slice is deleted", func() {
		nodes := sets.List(nodesOf("mit"))[:5]
		slice := newSlice("mit", "ephemeral", func(s *planetv1.SliceSpec) {
			s.Nodes.Names = nodes
			s.Users = []planetv1.SliceUser{{Name: "carol"}}
		})
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		Eventually(runningOn(slice, sets.New(nodes...))).Should(Succeed())

		Expect(k8s.Delete(ctx, slice)).To(Succeed())
		Eventually(func() error { return k8s.Get(ctx, client.ObjectKeyFromObject(slice), slice) }).Should(Satisfy(apierrors.IsNotFound))
		Eventually(func() error {
			return k8s.Get(ctx, client.ObjectKey{Name: naming.SliceNamespace("mit", "ephemeral")}, &corev1.Namespace{})
		}, 2*time.Minute).Should(Satisfy(apierrors.IsNotFound))
		pods := &corev1.PodList{}
		Expect(k8s.List(ctx, pods, client.MatchingLabels{planetv1.LabelSlice: "ephemeral"})).To(Succeed())
		Expect(pods.Items).To(BeEmpty())
	})
})

var _ = Describe("Deleting a site", func() {
	It("removes its namespace, its slices and everything they made", func() {
		node := emulator.NodeName("lab", 1)
		Expect(cluster.AddNode(ctx, node, "lab")).To(Succeed())
		site := &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "lab"}}
		Expect(k8s.Create(ctx, site)).To(Succeed())
		Eventually(func() error { return k8s.Get(ctx, client.ObjectKey{Name: "lab"}, &corev1.Namespace{}) }).Should(Succeed())
		slice := newSlice("lab", "bench", func(s *planetv1.SliceSpec) { s.Nodes.Sites = []string{"lab"} })
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		Eventually(runningOn(slice, sets.New(node))).Should(Succeed())

		Expect(k8s.Delete(ctx, site)).To(Succeed())
		for _, ns := range []string{"lab", naming.SliceNamespace("lab", "bench")} {
			Eventually(func() error {
				return k8s.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})
			}, 2*time.Minute).Should(Satisfy(apierrors.IsNotFound), "namespace %s", ns)
		}
		pods := &corev1.PodList{}
		Expect(k8s.List(ctx, pods, client.MatchingLabels{planetv1.LabelSite: "lab"})).To(Succeed())
		Expect(pods.Items).To(BeEmpty())
		Expect(cluster.DeleteNode(ctx, node)).To(Succeed())
	})
})

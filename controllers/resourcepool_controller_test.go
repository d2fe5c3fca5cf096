package controllers_test

import (
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
)

// rl builds a resource list from name, quantity pairs.
func rl(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

// newPool returns a pool of a site; parent "" makes a root pool over names.
func newPool(site, name, parent string, perNode corev1.ResourceList, names ...string) *planetv1.ResourcePool {
	p := &planetv1.ResourcePool{
		ObjectMeta: metav1.ObjectMeta{Namespace: site, Name: name},
		Spec:       planetv1.ResourcePoolSpec{Parent: parent, PerNode: perNode},
	}
	if len(names) > 0 || parent == "" {
		p.Spec.Nodes = &planetv1.NodeSelection{Names: names}
	}
	return p
}

// poolCondition returns a pool's condition, read afresh.
func poolCondition(site, name, t string) func(Gomega) metav1.Condition {
	return func(g Gomega) metav1.Condition {
		p := &planetv1.ResourcePool{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: site, Name: name}, p)).To(Succeed())
		c := meta.FindStatusCondition(p.Status.Conditions, t)
		g.Expect(c).NotTo(BeNil(), "no %s condition on %s/%s", t, site, name)
		return *c
	}
}

// sliver reads the one live sliver of a slice on a node.
func sliver(g Gomega, slice *planetv1.Slice, node string) *corev1.Pod {
	return sliverIn(g, naming.SliceNamespace(slice.Namespace, slice.Name), node)
}

// sliverIn reads the one live sliver in a slice namespace on a node.
func sliverIn(g Gomega, ns, node string) *corev1.Pod {
	pods := &corev1.PodList{}
	g.Expect(k8s.List(ctx, pods, client.InNamespace(ns))).To(Succeed())
	var live []*corev1.Pod
	for i := range pods.Items {
		if p := &pods.Items[i]; p.Spec.NodeName == node && p.DeletionTimestamp.IsZero() {
			live = append(live, p)
		}
	}
	g.Expect(live).To(HaveLen(1), "live slivers in %s on %s", ns, node)
	return live[0]
}

// kubeletStartsSlivers marks the slice's live slivers Running and Ready, as
// a kubelet would (envtest runs none): a replaced sliver goes only once its
// successor is Ready.
func kubeletStartsSlivers(g Gomega, slice *planetv1.Slice) {
	kubeletStartsSliversIn(g, naming.SliceNamespace(slice.Namespace, slice.Name))
}

// kubeletStartsSliversIn marks the live slivers of a slice namespace
// Running and Ready.
func kubeletStartsSliversIn(g Gomega, ns string) {
	pods := &corev1.PodList{}
	g.Expect(k8s.List(ctx, pods, client.InNamespace(ns))).To(Succeed())
	for i := range pods.Items {
		p := &pods.Items[i]
		if !p.DeletionTimestamp.IsZero() || p.Status.Phase == corev1.PodRunning {
			continue
		}
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		// A sliver deleted since the list (its node went) has nothing to start.
		g.Expect(client.IgnoreNotFound(k8s.Status().Update(ctx, p))).To(Succeed())
	}
}

var _ = Describe("ResourcePool controller", func() {
	It("accounts root pools and splits, and settles overcommit and foreign nodes by a condition", func() {
		makeSite("pa", nil)
		makeSite("pb", nil)
		makeNode("pa-1", "pa", nil)
		makeNode("pa-2", "pa", nil)
		makeNode("pb-1", "pb", nil)

		Expect(k8s.Create(ctx, newPool("pa", "root", "", rl("cpu", "2", "memory", "4Gi")))).To(Succeed())
		Eventually(poolCondition("pa", "root", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		Expect(k8s.Create(ctx, newPool("pa", "half", "root", rl("cpu", "1", "memory", "2Gi")))).To(Succeed())
		Eventually(poolCondition("pa", "half", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		Eventually(func(g Gomega) {
			root := &planetv1.ResourcePool{}
			g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: "pa", Name: "root"}, root)).To(Succeed())
			g.Expect(root.Status.NodeCount).To(BeEquivalentTo(2))
			g.Expect(root.Status.Nodes).To(HaveLen(2))
			for _, n := range root.Status.Nodes {
				g.Expect(n.Allocated.Cpu().String()).To(Equal("1"))
				g.Expect(n.Free.Memory().String()).To(Equal("2Gi"))
			}
		}).Should(Succeed())

		By("a later root pool past the node's capacity holds nothing and says where (creation times tie within a second; then names decide)")
		Expect(k8s.Create(ctx, newPool("pa", "surplus", "", rl("cpu", "3"), "pa-1"))).To(Succeed())
		Eventually(poolCondition("pa", "surplus", "Overcommitted")).Should(And(
			HaveField("Status", metav1.ConditionTrue),
			HaveField("Message", And(ContainSubstring("node pa-1"), ContainSubstring("cpu"))),
		))
		Consistently(poolCondition("pa", "root", "Ready"), time.Second).Should(HaveField("Status", metav1.ConditionTrue))

		By("a root pool over another site's node is invalid")
		Expect(k8s.Create(ctx, newPool("pa", "foreign", "", rl("cpu", "1"), "pb-1"))).To(Succeed())
		Eventually(poolCondition("pa", "foreign", "Ready")).Should(And(
			HaveField("Status", metav1.ConditionFalse),
			HaveField("Message", ContainSubstring("belongs to site pb")),
		))
	})

	It("lets exactly one of two pools created at once over the same full node win", func() {
		makeSite("race", nil)
		makeNode("race-1", "race", nil)
		var wg sync.WaitGroup
		for _, name := range []string{"left", "right"} {
			wg.Go(func() {
				defer GinkgoRecover()
				Expect(k8s.Create(ctx, newPool("race", name, "", rl("cpu", "3"), "race-1"))).To(Succeed())
			})
		}
		wg.Wait()
		statuses := func(g Gomega) []metav1.ConditionStatus {
			return []metav1.ConditionStatus{
				poolCondition("race", "left", "Overcommitted")(g).Status,
				poolCondition("race", "right", "Overcommitted")(g).Status,
			}
		}
		Eventually(statuses).Should(ConsistOf(metav1.ConditionTrue, metav1.ConditionFalse))
		Consistently(statuses, time.Second).Should(ConsistOf(metav1.ConditionTrue, metav1.ConditionFalse))
	})

	It("gives a bound slice's slivers the reserved amounts as Guaranteed, and fair share again once the binding ends", func() {
		makeSite("qa", nil)
		makeNode("qa-1", "qa", nil)
		makeNode("qa-2", "qa", nil)
		bound := newSlice("qa", "bound", nil)
		other := newSlice("qa", "other", nil)
		Expect(k8s.Create(ctx, bound)).To(Succeed())
		Expect(k8s.Create(ctx, other)).To(Succeed())
		Eventually(sliverNodes(bound)).Should(HaveLen(2))
		Eventually(sliverNodes(other)).Should(HaveLen(2))
		otherUID := func(g Gomega) types.UID { return sliver(g, other, "qa-1").UID }
		before := otherUID(Default)
		Expect(sliver(Default, bound, "qa-1").Status.QOSClass).To(Equal(corev1.PodQOSBurstable))

		Expect(k8s.Create(ctx, newPool("qa", "root", "", rl("cpu", "2", "memory", "4Gi")))).To(Succeed())
		lease := newPool("qa", "lease", "root", rl("cpu", "1500m", "memory", "3Gi"))
		lease.Spec.Binding = &planetv1.PoolBinding{Slice: "qa/bound", Until: metav1.Time{Time: time.Now().Add(6 * time.Second)}}
		Expect(k8s.Create(ctx, lease)).To(Succeed())
		Eventually(poolCondition("qa", "lease", "Bound")).Should(HaveField("Status", metav1.ConditionTrue))

		By("the successors start before their predecessors go (make-before-break)")
		Eventually(func(g Gomega) {
			pods := &corev1.PodList{}
			g.Expect(k8s.List(ctx, pods, client.InNamespace(naming.SliceNamespace("qa", "bound")))).To(Succeed())
			g.Expect(pods.Items).To(HaveLen(4), "two slivers on each node while the new ones are not Ready")
		}).Should(Succeed())
		Consistently(func(g Gomega) {
			pods := &corev1.PodList{}
			g.Expect(k8s.List(ctx, pods, client.InNamespace(naming.SliceNamespace("qa", "bound")))).To(Succeed())
			g.Expect(pods.Items).To(HaveLen(4))
		}, time.Second).Should(Succeed())
		for _, node := range []string{"qa-1", "qa-2"} {
			Eventually(func(g Gomega) {
				kubeletStartsSlivers(g, bound)
				p := sliver(g, bound, node)
				g.Expect(p.Status.QOSClass).To(Equal(corev1.PodQOSGuaranteed))
				res := p.Spec.Containers[0].Resources
				g.Expect(res.Requests.Cpu().String()).To(Equal("1500m"))
				g.Expect(res.Limits.Cpu().String()).To(Equal("1500m"))
				g.Expect(res.Requests.Memory().String()).To(Equal("3Gi"))
				g.Expect(res.Limits.Memory().String()).To(Equal("3Gi"))
			}).Should(Succeed())
		}
		Expect(otherUID(Default)).To(Equal(before), "a sliver of another slice was recreated")

		By("the binding's end brings the fair share back")
		Eventually(poolCondition("qa", "lease", "Expired"), 20*time.Second).Should(HaveField("Status", metav1.ConditionTrue))
		Eventually(func(g Gomega) {
			kubeletStartsSlivers(g, bound)
			p := sliver(g, bound, "qa-1")
			g.Expect(p.Status.QOSClass).To(Equal(corev1.PodQOSBurstable))
			g.Expect(p.Spec.Containers[0].Resources.Limits.Cpu().IsZero()).To(BeTrue())
		}, 20*time.Second).Should(Succeed())
		Expect(otherUID(Default)).To(Equal(before))
	})

	It("lets the old sliver go at once when its successor fails, so that the two cannot lock", func() {
		makeSite("qf", nil)
		makeNode("qf-1", "qf", nil)
		slice := newSlice("qf", "stuck", nil)
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		Eventually(sliverNodes(slice)).Should(HaveLen(1))
		old := sliver(Default, slice, "qf-1")

		Expect(k8s.Create(ctx, newPool("qf", "root", "", rl("cpu", "2", "memory", "4Gi")))).To(Succeed())
		lease := newPool("qf", "lease", "root", rl("cpu", "1", "memory", "1Gi"))
		lease.Spec.Binding = &planetv1.PoolBinding{Slice: "qf/stuck", Until: metav1.Time{Time: time.Now().Add(time.Hour)}}
		Expect(k8s.Create(ctx, lease)).To(Succeed())

		pods := func(g Gomega) []corev1.Pod {
			list := &corev1.PodList{}
			g.Expect(k8s.List(ctx, list, client.InNamespace(naming.SliceNamespace("qf", "stuck")))).To(Succeed())
			return list.Items
		}
		Eventually(pods).Should(HaveLen(2), "the successor starts beside the old sliver")
		By("the successor fails, as on a node too full for both")
		Eventually(func(g Gomega) {
			for _, p := range pods(g) {
				if p.UID != old.UID && p.Status.Phase != corev1.PodFailed {
					p.Status.Phase = corev1.PodFailed
					g.Expect(k8s.Status().Update(ctx, &p)).To(Succeed())
				}
			}
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			for _, p := range pods(g) {
				g.Expect(p.UID).NotTo(Equal(old.UID), "the old sliver is still there")
			}
		}).Should(Succeed())
	})
})

package e2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
)

// newPool returns a pool of a site holding cpu and memory on each node;
// parent "" makes a root pool over the named nodes.
func newPool(site, name, parent, cpu, memory string, names ...string) *planetv1.ResourcePool {
	p := &planetv1.ResourcePool{
		ObjectMeta: metav1.ObjectMeta{Namespace: site, Name: name},
		Spec: planetv1.ResourcePoolSpec{Parent: parent, PerNode: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(memory),
		}},
	}
	if parent == "" {
		p.Spec.Nodes = &planetv1.NodeSelection{Names: names}
	}
	return p
}

// poolCondition returns the status of a condition of the pool, read afresh.
func poolCondition(pool *planetv1.ResourcePool, t string) func(Gomega) metav1.ConditionStatus {
	return func(g Gomega) metav1.ConditionStatus {
		got := &planetv1.ResourcePool{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pool), got)).To(Succeed())
		c := meta.FindStatusCondition(got.Status.Conditions, t)
		g.Expect(c).NotTo(BeNil(), "no %s condition on pool %s", t, pool.Name)
		return c.Status
	}
}

// sliverResources says what a sliver must run with: its QoS class, its
// container's cpu request and memory limit, and, when Guaranteed, that its
// requests equal its limits.
type sliverResources struct {
	qos         corev1.PodQOSClass
	cpu, memory string
}

// sliversOn reads the one live, Running sliver of the slice on each node
// (a sliver whose reservation changes is replaced under a new name).
func sliversOn(g Gomega, slice *planetv1.Slice, nodes sets.Set[string]) map[string]*corev1.Pod {
	pods := &corev1.PodList{}
	g.Expect(k8s.List(ctx, pods, client.InNamespace(naming.SliceNamespace(slice.Namespace, slice.Name)))).To(Succeed())
	out := map[string]*corev1.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if !nodes.Has(p.Spec.NodeName) || !p.DeletionTimestamp.IsZero() {
			continue
		}
		g.Expect(out).NotTo(HaveKey(p.Spec.NodeName), "two live slivers on %s", p.Spec.NodeName)
		g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning), "sliver %s", p.Name)
		out[p.Spec.NodeName] = p
	}
	g.Expect(out).To(HaveLen(nodes.Len()))
	return out
}

// haveResources succeeds when the slice's slivers on nodes are Running with
// the resources want.
func haveResources(slice *planetv1.Slice, nodes sets.Set[string], want sliverResources) func(Gomega) {
	return func(g Gomega) {
		for n, p := range sliversOn(g, slice, nodes) {
			r := p.Spec.Containers[0].Resources
			g.Expect(p.Status.QOSClass).To(Equal(want.qos), "QoS class of the sliver on %s", n)
			g.Expect(r.Requests.Cpu().String()).To(Equal(want.cpu), "cpu request of the sliver on %s", n)
			g.Expect(r.Limits.Memory().String()).To(Equal(want.memory), "memory limit of the sliver on %s", n)
			if want.qos == corev1.PodQOSGuaranteed {
				g.Expect(r.Limits.Cpu().String()).To(Equal(want.cpu), "cpu limit of the sliver on %s", n)
				g.Expect(r.Requests.Memory().String()).To(Equal(want.memory), "memory request of the sliver on %s", n)
			} else {
				g.Expect(r.Limits).NotTo(HaveKey(corev1.ResourceCPU), "a fair-share sliver on %s has a cpu limit", n)
			}
		}
	}
}

// uids returns the UIDs of the slice's slivers on nodes, by node.
func uids(slice *planetv1.Slice, nodes sets.Set[string]) map[string]types.UID {
	GinkgoHelper()
	out := map[string]types.UID{}
	Eventually(func(g Gomega) {
		for n, p := range sliversOn(g, slice, nodes) {
			out[n] = p.UID
		}
	}).Should(Succeed())
	return out
}

var _ = Describe("Resource pools on the emulated cluster", Ordered, func() {
	It("gives a bound slice Guaranteed slivers on the pool's nodes only, and the fair share back when the binding ends", func() {
		// Nodes no other spec of the suite picks (they take the first few).
		tokyo := sets.New(sets.List(nodesOf("tokyo"))[10:20]...)
		others := sets.New(sets.List(nodesOf("mit"))[10:15]...).Insert(sets.List(nodesOf("berkeley"))[10:15]...)
		spreadNodes := tokyo.Union(others)
		spread := newSlice("tokyo", "spread", func(s *planetv1.SliceSpec) { s.Nodes.Names = sets.List(spreadNodes) })
		bystander := newSlice("tokyo", "bystander", func(s *planetv1.SliceSpec) { s.Nodes.Names = sets.List(tokyo) })

		// Nodes are 32 cpu / 256Gi; share 1 of 100 shares per node.
		fullShare := sliverResources{qos: corev1.PodQOSBurstable, cpu: "320m", memory: "256Gi"}
		bound := sliverResources{qos: corev1.PodQOSGuaranteed, cpu: "3", memory: "6Gi"}
		// With the root pool's 8 cpu / 32Gi taken out of the node.
		reservedShare := sliverResources{qos: corev1.PodQOSBurstable, cpu: "240m", memory: "224Gi"}

		By("running both slices before any pool exists")
		Expect(k8s.Create(ctx, spread)).To(Succeed())
		Expect(k8s.Create(ctx, bystander)).To(Succeed())
		Eventually(runningOn(spread, spreadNodes)).Should(Succeed())
		Eventually(runningOn(bystander, tokyo)).Should(Succeed())
		Eventually(haveResources(spread, spreadNodes, fullShare)).Should(Succeed())
		Eventually(haveResources(bystander, tokyo, fullShare)).Should(Succeed())
		bystanderUIDs := uids(bystander, tokyo)

		By("making a root pool over the 10 tokyo nodes and two sub-pools")
		root := newPool("tokyo", "root", "", "8", "32Gi", sets.List(tokyo)...)
		small := newPool("tokyo", "small", "root", "2", "4Gi")
		large := newPool("tokyo", "large", "root", "3", "6Gi")
		for _, p := range []*planetv1.ResourcePool{root, small, large} {
			Expect(k8s.Create(ctx, p)).To(Succeed())
			Eventually(poolCondition(p, planetv1.ConditionReady)).Should(Equal(metav1.ConditionTrue), "pool %s", p.Name)
		}
		Eventually(poolCondition(root, "Overcommitted")).Should(Equal(metav1.ConditionFalse))
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(root), root)).To(Succeed())
			g.Expect(root.Status.NodeCount).To(BeEquivalentTo(tokyo.Len()))
			g.Expect(root.Status.Nodes).To(HaveLen(tokyo.Len()))
			for _, n := range root.Status.Nodes {
				g.Expect(n.Allocated.Cpu().String()).To(Equal("5"), "node %s", n.Node)
				g.Expect(n.Free.Memory().String()).To(Equal("22Gi"), "node %s", n.Node)
			}
		}).Should(Succeed())

		By("binding the 3 cpu / 6Gi sub-pool to tokyo/spread for 90 s")
		update(large, func(p *planetv1.ResourcePool) {
			p.Spec.Binding = &planetv1.PoolBinding{Slice: "tokyo/spread", Until: metav1.NewTime(time.Now().Add(90 * time.Second))}
		})
		Eventually(poolCondition(large, "Bound")).Should(Equal(metav1.ConditionTrue))
		Eventually(poolCondition(small, "Bound")).Should(Equal(metav1.ConditionFalse))
		Eventually(haveResources(spread, tokyo, bound)).Should(Succeed())
		Eventually(runningOn(spread, spreadNodes)).Should(Succeed())
		Eventually(haveResources(spread, others, fullShare)).Should(Succeed())

		By("leaving the bystander's slivers alone: not recreated for fair-share drift")
		Consistently(haveResources(bystander, tokyo, fullShare), 3*time.Second).Should(Succeed())
		Expect(uids(bystander, tokyo)).To(Equal(bystanderUIDs))

		By("ending the binding early: the tokyo slivers of spread go back to the fair share of unreserved capacity")
		update(large, func(p *planetv1.ResourcePool) { p.Spec.Binding.Until = metav1.NewTime(time.Now().Add(5 * time.Second)) })
		Eventually(haveResources(spread, tokyo, reservedShare), 30*time.Second).Should(Succeed())
		Eventually(runningOn(spread, spreadNodes)).Should(Succeed())
		Eventually(haveResources(spread, others, fullShare)).Should(Succeed())
		Eventually(poolCondition(large, "Bound")).Should(Equal(metav1.ConditionFalse))
		Eventually(poolCondition(large, planetv1.ConditionExpired)).Should(Equal(metav1.ConditionTrue))
		Expect(uids(bystander, tokyo)).To(Equal(bystanderUIDs))
	})
})

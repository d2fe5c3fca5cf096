package controllers_test

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/clusterview"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/ticket"
)

// siteAllocations returns a site's status.allocations, read afresh.
func siteAllocations(name string) func(Gomega) []planetv1.AuthorityAllocation {
	return func(g Gomega) []planetv1.AuthorityAllocation {
		s := &planetv1.Site{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, s)).To(Succeed())
		return s.Status.Allocations
	}
}

var _ = Describe("Authority allocations", Ordered, func() {
	var (
		plk   = ticket.NewSigner("plk", testKey("m"))
		plm   = ticket.NewSigner("plm", testKey("n"))
		now   = time.Now().Add(-time.Minute).Truncate(time.Second)
		part  = newPool("ala", "plk-part", "", rl("cpu", "2", "memory", "4Gi", "planetkube.io/slivers", "1"), "ala-1")
		local = newSlice("ala", "local", nil)
	)
	localUID := func(g Gomega) types.UID { return sliver(g, local, "ala-1").UID }
	var before types.UID
	exp, exp2 := naming.ForeignSliceNamespace("plk", "inria", "exp"), naming.ForeignSliceNamespace("plk", "inria", "exp2")
	redeem := func(by ticket.Signer, name, full string) {
		GinkgoHelper()
		tk := applyTicket("ala", name, issueTicket(by, sliverGrant("ala-"+name, full, now, func(c *ticket.Claims) {
			c.Sliver.Nodes.Sites = []string{"ala"}
		})))
		Eventually(ticketReady(tk)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
	}
	// grantPart is a pool grant of half a cpu of pool to slice.
	grantPart := func(by ticket.Signer, name, pool, full string) *planetv1.Ticket {
		GinkgoHelper()
		c := sliverGrant("ala-"+name, full, now, nil)
		c.Sliver, c.Pool = nil, &ticket.PoolGrant{Pool: pool, PerNode: rl("cpu", "500m"), Slice: full}
		return applyTicket("ala", name, issueTicket(by, c))
	}

	BeforeAll(func() {
		makeAuthority(plk)
		makeAuthority(plm)
		makeSite("ala", func(s *planetv1.SiteSpec) { s.TrustedAuthorities = []string{"plc", "plk", "plm"} })
		makeNode("ala-1", "ala", nil)
		makeNode("ala-2", "ala", nil)
	})

	It("gives the authority's slivers its part, caps them per node and resizes them make-before-break", func() {
		Expect(k8s.Create(ctx, local)).To(Succeed())
		Eventually(sliverNodes(local)).Should(HaveLen(2))
		before = localUID(Default)

		part.Spec.Binding = &planetv1.PoolBinding{Authority: "plk"}
		Expect(k8s.Create(ctx, part)).To(Succeed())
		Eventually(poolCondition("ala", "plk-part", planetv1.ConditionBound)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonBindingActive))
		Expect(poolCondition("ala", "plk-part", planetv1.ConditionBound)(Default).Message).To(Equal("bound to authority plk until the binding is removed"))

		By("on the allocated node the authority's sliver shares the part; elsewhere the node")
		redeem(plk, "exp", "plk.inria.exp")
		Eventually(func(g Gomega) {
			p := sliverIn(g, exp, "ala-1")
			g.Expect(p.Annotations).To(HaveKeyWithValue(clusterview.AnnotationAllocation, "plk"))
			res := p.Spec.Containers[0].Resources
			g.Expect(res.Requests.Cpu().String()).To(Equal("20m"), "2 cpu, 1 share of 100")
			g.Expect(res.Limits.Memory().String()).To(Equal("4Gi"))
			q := sliverIn(g, exp, "ala-2")
			g.Expect(q.Annotations).NotTo(HaveKey(clusterview.AnnotationAllocation))
			g.Expect(q.Spec.Containers[0].Resources.Requests.Cpu().String()).To(Equal("40m"), "4 cpu, 1 share of 100")
			g.Expect(q.Spec.Containers[0].Resources.Limits.Memory().String()).To(Equal("16Gi"))
		}).Should(Succeed())
		Eventually(siteAllocations("ala")).Should(ConsistOf(And(
			HaveField("Authority", "plk"), HaveField("Nodes", int32(1)),
			HaveField("Allocated", HaveKeyWithValue(corev1.ResourceCPU, resource.MustParse("2"))),
			HaveField("Used", And(HaveKeyWithValue(corev1.ResourceCPU, resource.MustParse("20m")), HaveKeyWithValue(planetv1.ResourceSlivers, resource.MustParse("1")))),
		)))

		By("the cap: another slice of the authority gets no sliver on the allocated node")
		redeem(plk, "exp2", "plk.inria.exp2")
		Eventually(sliverNodesIn(exp2)).Should(HaveLen(1))
		Expect(sliverNodesIn(exp2)(Default)).To(ConsistOf("ala-2"))
		Eventually(func(g Gomega) map[string][]string { return placementOf(foreignSlice(g, "plk.inria.exp2"))(g) }).
			Should(HaveKeyWithValue(planetv1.ReasonAllocationFull, []string{"ala-1"}))
		Consistently(sliverNodesIn(exp2), time.Second).Should(HaveLen(1))

		By("a bigger allocation replaces the authority's sliver there, make-before-break, and no other")
		Eventually(func(g Gomega) { kubeletStartsSliversIn(g, exp) }).Should(Succeed())
		old := sliverIn(Default, exp, "ala-1").Name
		Expect(updateSpec(client.ObjectKeyFromObject(part), part, func() { part.Spec.PerNode[corev1.ResourceCPU] = resource.MustParse("3") })).To(Succeed())
		Eventually(func(g Gomega) []string {
			pods := &corev1.PodList{}
			g.Expect(k8s.List(ctx, pods, client.InNamespace(exp))).To(Succeed())
			var on []string
			for _, p := range pods.Items {
				if p.Spec.NodeName == "ala-1" {
					on = append(on, p.Name)
				}
			}
			return on
		}).Should(And(HaveLen(2), ContainElement(old)), "the old sliver stays until its successor is Ready")
		Eventually(func(g Gomega) {
			kubeletStartsSliversIn(g, exp)
			p := sliverIn(g, exp, "ala-1")
			g.Expect(p.Name).NotTo(Equal(old))
			g.Expect(p.Spec.Containers[0].Resources.Requests.Cpu().String()).To(Equal("30m"))
		}).Should(Succeed())
		Expect(localUID(Default)).To(Equal(before), "a local sliver was recreated")
	})

	It("lets no other authority's pool grant split the allocation, and the authority's own", func() {
		redeem(plm, "thief", "plm.inria.thief")
		Expect(k8s.Create(ctx, newPool("ala", "plk-half", "plk-part", rl("cpu", "1")))).To(Succeed())
		for _, pool := range []string{"ala/plk-part", "ala/plk-half"} {
			tk := grantPart(plm, "steal-"+strings.TrimPrefix(pool, "ala/"), pool, "plm.inria.thief")
			Eventually(ticketReady(tk)).Should(withReason(metav1.ConditionFalse, string(ticket.InvalidGrant)))
			Expect(ticketReady(tk)(Default).Message).To(ContainSubstring("allocation to authority plk (pool plk-part): only that authority's slices take parts of it, not plm's"))
			// Refusals that depend on the cluster are checked again when it
			// changes: once the allocation is dropped below, this one would
			// be redeemed.
			Expect(k8s.Delete(ctx, tk)).To(Succeed())
		}
		tk := grantPart(plk, "own-part", "ala/plk-half", "plk.inria.exp")
		Eventually(ticketReady(tk)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
	})

	It("returns the slivers to the shared part and lifts the cap when the allocation is dropped", func() {
		Expect(updateSpec(client.ObjectKeyFromObject(part), part, func() { part.Spec.Binding = nil })).To(Succeed())
		Eventually(func(g Gomega) {
			kubeletStartsSliversIn(g, exp)
			p := sliverIn(g, exp, "ala-1")
			g.Expect(p.Annotations).NotTo(HaveKey(clusterview.AnnotationAllocation))
			g.Expect(p.Spec.Containers[0].Resources.Limits.Memory().String()).To(Equal("12Gi"), "the node's 16Gi less the pool's 4Gi, which stays reserved")
		}).Should(Succeed())
		Eventually(sliverNodesIn(exp2)).Should(HaveLen(2))
		Eventually(siteAllocations("ala")).Should(BeEmpty())
		Expect(localUID(Default)).To(Equal(before))
	})

	It("gives nothing to an authority the site does not trust, and says so, until the site trusts it", func() {
		p := newPool("ala", "plx-part", "", rl("cpu", "1"), "ala-2")
		p.Spec.Binding = &planetv1.PoolBinding{Authority: "plx"}
		Expect(k8s.Create(ctx, p)).To(Succeed())
		Eventually(poolCondition("ala", "plx-part", planetv1.ConditionBound)).Should(withReason(metav1.ConditionFalse, planetv1.ReasonNotTrusted))
		site := &planetv1.Site{}
		Expect(updateSpec(client.ObjectKey{Name: "ala"}, site, func() { site.Spec.TrustedAuthorities = append(site.Spec.TrustedAuthorities, "plx") })).To(Succeed())
		Eventually(poolCondition("ala", "plx-part", planetv1.ConditionBound)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonBindingActive))
	})
})

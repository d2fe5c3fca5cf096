package controllers_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
)

// placementOf returns the slice's placement summary as reason → node
// names, with "Running" → the count of running nodes, read afresh.
func placementOf(slice *planetv1.Slice) func(Gomega) map[string][]string {
	return func(g Gomega) map[string][]string {
		got := &planetv1.Slice{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(slice), got)).To(Succeed())
		p := got.Status.Placement
		g.Expect(p).NotTo(BeNil(), "no placement summary yet")
		out := map[string][]string{}
		var sum int32
		for _, gr := range p.Groups {
			g.Expect(gr.Message).NotTo(BeEmpty(), "group %s without a message", gr.Reason)
			g.Expect(gr.Nodes).To(HaveLen(int(min(gr.Count, planetv1.MaxPlacementExamples))))
			out[gr.Reason] = gr.Nodes
			sum += gr.Count
		}
		g.Expect(sum).To(Equal(p.NotRunning), "groups count every node not running")
		g.Expect(p.Running + p.NotRunning).To(Equal(p.Selected))
		for range p.Running {
			out["Running"] = append(out["Running"], "")
		}
		return out
	}
}

var _ = Describe("Slice placement summary", func() {
	It("says why each selected node runs no sliver: not trusted, disabled, not ready, full, held by a bound pool", func() {
		makeSite("whya", nil)
		makeSite("whyb", nil)
		makeSite("whyc", nil)
		makeSite("whyd", func(s *planetv1.SiteSpec) { s.State = planetv1.SiteDisabled })
		makeNode("whya-1", "whya", nil)
		full := makeNode("whya-2", "whya", nil)
		notReady := makeNode("whyb-1", "whyb", nil)
		makeNode("whyb-2", "whyb", nil)
		makeNode("whyc-1", "whyc", nil)
		makeNode("whyd-1", "whyd", nil)
		setNodeReady(notReady, corev1.ConditionFalse)
		By("whya-2 takes no more pods")
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(full), full)).To(Succeed())
		full.Status.Allocatable[corev1.ResourcePods] = resource.MustParse("0")
		Expect(k8s.Status().Update(ctx, full)).To(Succeed())
		By("a pool bound to another slice holds every sliver slot of whyb-2")
		keeper := newSlice("whyb", "keeper", func(s *planetv1.SliceSpec) { s.Nodes.Names = []string{"whyb-2"} })
		Expect(k8s.Create(ctx, keeper)).To(Succeed())
		hold := newPool("whyb", "hold", "", rl("planetkube.io/slivers", "110"), "whyb-2")
		hold.Spec.Binding = &planetv1.PoolBinding{Slice: "whyb/keeper", Until: metav1.Time{Time: time.Now().Add(time.Hour)}}
		Expect(k8s.Create(ctx, hold)).To(Succeed())
		Eventually(poolCondition("whyb", "hold", "Bound")).Should(HaveField("Status", metav1.ConditionTrue))
		Eventually(func(g Gomega) { // the keeper's sliver moves onto the reservation, make before break
			kubeletStartsSlivers(g, keeper)
			g.Expect(sliverNodes(keeper)(g)).To(Equal(map[string]string{sliver(g, keeper, "whyb-2").Name: "whyb-2"}))
			g.Expect(sliver(g, keeper, "whyb-2").Annotations).To(HaveKeyWithValue("planetkube.io/reserved-hash", Not(BeEmpty())))
		}).Should(Succeed())

		why := newSlice("whya", "why", func(s *planetv1.SliceSpec) { s.Nodes.Sites = []string{"whya", "whyb", "whyc", "whyd"} })
		Expect(k8s.Create(ctx, why)).To(Succeed())
		Eventually(sliverNodes(why)).Should(Equal(sliversOn("why", "whya-1", "whyc-1")))
		markSliversReady(why)
		Eventually(placementOf(why)).Should(Equal(map[string][]string{
			"Running":                   {"", ""},
			planetv1.ReasonNodeFull:     {"whya-2"},
			planetv1.ReasonNodeNotReady: {"whyb-1"},
			planetv1.ReasonNodeReserved: {"whyb-2"},
			planetv1.ReasonSiteDisabled: {"whyd-1"},
		}))
		Eventually(condition(why, planetv1.ConditionReady)).Should(HaveField("Message", ContainSubstring("2 of 4 slivers ready; 2 nodes have no room for one")))

		By("whyc stops trusting plc: its node's sliver goes, and the summary says why")
		site := &planetv1.Site{}
		Expect(updateSpec(client.ObjectKey{Name: "whyc"}, site, func() { site.Spec.TrustedAuthorities = []string{"ple"} })).To(Succeed())
		Eventually(sliverNodes(why)).Should(Equal(sliversOn("why", "whya-1")))
		Eventually(placementOf(why)).Should(HaveKeyWithValue(planetv1.ReasonNotTrusted, []string{"whyc-1"}))
		got := &planetv1.Slice{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(why), got)).To(Succeed())
		for _, g := range got.Status.Placement.Groups {
			switch g.Reason {
			case planetv1.ReasonNotTrusted:
				Expect(g.Message).To(ContainSubstring("does not trust authority plc"))
				Expect(g.Sites).To(Equal([]string{"whyc"}))
			case planetv1.ReasonNodeReserved:
				Expect(g.Message).To(ContainSubstring("held by resource pools"))
			}
		}
	})

	It("counts every selected node under the slice's own block: a site at its slice limit", func() {
		makeSite("whye", func(s *planetv1.SiteSpec) { s.MaxSlices = ptr.To[int32](1) })
		makeNode("whye-1", "whye", nil)
		makeNode("whye-2", "whye", nil)
		first := newSlice("whye", "first", nil)
		Expect(k8s.Create(ctx, first)).To(Succeed())
		Eventually(sliverNodes(first)).Should(HaveLen(2))
		second := newSlice("whye", "second", nil)
		Expect(k8s.Create(ctx, second)).To(Succeed())
		Eventually(placementOf(second)).Should(Equal(map[string][]string{planetv1.ReasonSiteSliceLimit: {"whye-1", "whye-2"}}))
	})
})

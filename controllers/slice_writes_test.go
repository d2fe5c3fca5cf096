package controllers_test

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/manager"
)

// The window a Slice's status changes are held for here: long beside a
// reconcile, so that a write that was not held shows.
const testStatusCoalesce = 6 * time.Second

// rolloutEvents counts the SliversCreated events about a slice.
func rolloutEvents(slice *planetv1.Slice) func(Gomega) int {
	return func(g Gomega) int {
		list := &eventsv1.EventList{}
		g.Expect(k8s.List(ctx, list, client.InNamespace(slice.Namespace))).To(Succeed())
		n := 0
		for _, e := range list.Items {
			if e.Regarding.Kind == "Slice" && e.Regarding.Name == slice.Name && e.Reason == planetv1.ReasonSliversCreated {
				n++
			}
		}
		return n
	}
}

// sliceStatus returns a slice's status, read afresh.
func sliceStatus(slice *planetv1.Slice) func(Gomega) planetv1.SliceStatus {
	return func(g Gomega) planetv1.SliceStatus {
		got := &planetv1.Slice{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(slice), got)).To(Succeed())
		return got.Status
	}
}

var _ = Describe("Slice writes as nodes join", Ordered, func() {
	BeforeAll(func() {
		// This suite's manager writes every status change at once and the
		// keys with every sliver; here, as the manager binary does by
		// default, changes are held and the keys rechecked seldom.
		stopManager()
		startManager(func(o *manager.Options) {
			o.StatusCoalesce = testStatusCoalesce
			o.KeysRecheck = time.Hour
		})
		DeferCleanup(func() {
			stopManager()
			startManager()
		})
	})

	slice := newSlice("cw", "churn", nil)

	It("costs a slice one sliver per joining node and one status write for a burst of them, and the status still reaches the last state", func() {
		makeSite("cw", nil)
		makeNode("cw-1", "cw", nil)
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		Eventually(sliverNodes(slice)).Should(Equal(sliversOn("churn", "cw-1")))
		markSliversReady(slice)
		Eventually(sliceStatus(slice), 2*testStatusCoalesce).Should(HaveField("Slivers", "1/1"))
		Eventually(rolloutEvents(slice)).Should(Equal(1))

		mark := writes.count()
		By("four nodes join one after another, each sliver made and ready before the next node")
		for i := 2; i <= 5; i++ {
			makeNode(fmt.Sprintf("cw-%d", i), "cw", nil)
			Eventually(sliverNodes(slice)).Should(HaveLen(i))
			markSliversReady(slice)
		}

		By("the status reaches the last state, 5/5 ready, without a write per sliver transition")
		Eventually(sliceStatus(slice), 3*testStatusCoalesce).Should(And(
			HaveField("Slivers", "5/5"),
			HaveField("Conditions", ContainElement(And(HaveField("Type", planetv1.ConditionReady), HaveField("Status", metav1.ConditionTrue)))),
		))
		creates := writes.since(mark, "create Pod")
		Expect(creates).To(HaveLen(4), "one sliver a joining node")
		// Without the hold: a write as each sliver is made (Ready turning
		// False), and as it becomes ready: eight.
		Expect(len(writes.since(mark, "patch Slice/status cw/churn"))).To(BeNumerically("<=", 2), "status writes %v", writes.since(mark, "Slice/status cw/churn"))
		Expect(writes.since(mark, "SecretApplyConfiguration")).To(BeEmpty(), "the keys are not written again for new slivers within --keys-recheck")
		Expect(rolloutEvents(slice)(Default)).To(Equal(1), "no SliversCreated event for the joining nodes")
	})

	It("writes a new generation at once, not at the window's end", func() {
		Expect(updateSpec(client.ObjectKeyFromObject(slice), slice, func() { slice.Spec.Description = "a new description" })).To(Succeed())
		got := &planetv1.Slice{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(slice), got)).To(Succeed())
		Eventually(sliceStatus(slice), testStatusCoalesce/2, 100*time.Millisecond).Should(HaveField("ObservedGeneration", got.Generation))
	})
})

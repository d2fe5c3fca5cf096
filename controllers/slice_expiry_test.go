package controllers_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/slicemetrics"
)

// expiryEvents returns the events about a slice whose reason is LastWeek
// or LastDay.
func expiryEvents(slice *planetv1.Slice) func(Gomega) []eventsv1.Event {
	return func(g Gomega) []eventsv1.Event {
		list := &eventsv1.EventList{}
		g.Expect(k8s.List(ctx, list, client.InNamespace(slice.Namespace))).To(Succeed())
		var out []eventsv1.Event
		for _, e := range list.Items {
			if e.Regarding.Kind == "Slice" && e.Regarding.Name == slice.Name &&
				(e.Reason == planetv1.ReasonLastWeek || e.Reason == planetv1.ReasonLastDay) {
				out = append(out, e)
			}
		}
		return out
	}
}

// warning matches one Warning event of a reason, sent once (no series),
// whose note says how to renew the slice.
func warning(reason string, slice *planetv1.Slice) OmegaMatcher {
	return And(
		HaveField("Type", corev1.EventTypeWarning), HaveField("Reason", reason), HaveField("Series", BeNil()),
		HaveField("Note", And(
			ContainSubstring("planetkube slice renew "+slice.Name+" -n "+slice.Namespace+" --for 14d"),
			ContainSubstring("spec.expiresAt"))))
}

// expirySeconds reads planetkube_slice_expiry_seconds of a slice from the
// registry the manager serves its metrics from.
func expirySeconds(slice *planetv1.Slice) func(Gomega) float64 {
	return func(g Gomega) float64 {
		families, err := ctrlmetrics.Registry.Gather()
		g.Expect(err).NotTo(HaveOccurred())
		for _, f := range families {
			if f.GetName() != slicemetrics.ExpiryName {
				continue
			}
			for _, m := range f.GetMetric() {
				if hasLabel(m, "namespace", slice.Namespace) && hasLabel(m, "slice", slice.Name) {
					return m.GetGauge().GetValue()
				}
			}
		}
		g.Expect(false).To(BeTrue(), "no %s for %s/%s", slicemetrics.ExpiryName, slice.Namespace, slice.Name)
		return 0
	}
}

// kstatusOf is the slice's health as kstatus (Flux, kubectl wait) computes it.
func kstatusOf(slice *planetv1.Slice) func(Gomega) status.Status {
	return func(g Gomega) status.Status {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(planetv1.GroupVersion.WithKind("Slice"))
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(slice), u)).To(Succeed())
		res, err := status.Compute(u)
		g.Expect(err).NotTo(HaveOccurred())
		return res.Status
	}
}

var _ = Describe("Slice expiry notice", func() {
	// The thresholds come at real time, a few seconds after the slice is
	// made: the slice lives in a namespace that is no site's, so nothing
	// but the controller's own wake-up (RequeueAfter at the threshold)
	// reconciles it again: no slice namespace, pod or site event.
	It("wakes at 7 days and at 24 hours left to say so, with one Warning event each", func() {
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "exnosite"}})).To(Succeed())
		const margin = 4 * time.Second
		week := time.Now().Truncate(time.Second).Add(margin) // when 7 days are left
		slice := newSlice("exnosite", "weekly", func(s *planetv1.SliceSpec) {
			s.ExpiresAt = &metav1.Time{Time: week.Add(7 * 24 * time.Hour)}
		})
		Expect(k8s.Create(ctx, slice)).To(Succeed())

		By("7 days and a few seconds left: not yet")
		Eventually(condition(slice, planetv1.ConditionExpiresSoon)).Should(And(
			withReason(metav1.ConditionFalse, planetv1.ReasonNotExpiringSoon),
			HaveField("Message", ContainSubstring(slice.Spec.ExpiresAt.UTC().Format(time.RFC3339)))))
		Expect(time.Now()).To(BeTemporally("<", week), "the test was too slow to see the slice before its last week")
		Expect(expiryEvents(slice)(Default)).To(BeEmpty())

		By("7 days left: the last week, from the threshold on")
		Eventually(condition(slice, planetv1.ConditionExpiresSoon), 3*margin).Should(And(
			withReason(metav1.ConditionTrue, planetv1.ReasonLastWeek),
			HaveField("Message", ContainSubstring("planetkube slice renew weekly -n exnosite --for 14d")),
			HaveField("LastTransitionTime.Time", BeTemporally(">=", week))))
		Eventually(expiryEvents(slice)).Should(ConsistOf(And(
			warning(planetv1.ReasonLastWeek, slice), HaveField("EventTime.Time", BeTemporally(">=", week)))))

		By("renewed to 24 hours and a few seconds: still the last week, no new event")
		day := time.Now().Truncate(time.Second).Add(margin) // when 24 hours are left
		Expect(updateSpec(client.ObjectKeyFromObject(slice), slice, func() {
			slice.Spec.ExpiresAt = &metav1.Time{Time: day.Add(24 * time.Hour)}
		})).To(Succeed())
		Eventually(condition(slice, planetv1.ConditionExpiresSoon)).Should(And(
			withReason(metav1.ConditionTrue, planetv1.ReasonLastWeek),
			HaveField("Message", ContainSubstring(slice.Spec.ExpiresAt.UTC().Format(time.RFC3339)))))
		Expect(time.Now()).To(BeTemporally("<", day), "the test was too slow to see the slice before its last day")

		By("24 hours left: the last day, from the threshold on")
		Eventually(condition(slice, planetv1.ConditionExpiresSoon), 3*margin).Should(withReason(metav1.ConditionTrue, planetv1.ReasonLastDay))
		Eventually(expiryEvents(slice)).Should(ConsistOf(warning(planetv1.ReasonLastWeek, slice), And(
			warning(planetv1.ReasonLastDay, slice), HaveField("EventTime.Time", BeTemporally(">=", day)))))
	})

	It("never makes the slice unhealthy; a suspended or expired slice gets no notice; the metric says the seconds left", func() {
		makeSite("exa", nil)
		makeNode("exa-1", "exa", nil)
		slice := newSlice("exa", "soon", func(s *planetv1.SliceSpec) {
			s.ExpiresAt = &metav1.Time{Time: time.Now().Add(3 * 24 * time.Hour)}
		})
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		Eventually(condition(slice, planetv1.ConditionExpiresSoon)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonLastWeek))
		Eventually(sliverNodes(slice)).Should(HaveLen(1))
		markSliversReady(slice)

		By("Ready, Current for kstatus, in its last week")
		Eventually(condition(slice, planetv1.ConditionReady)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonSliversReady))
		Eventually(kstatusOf(slice)).Should(Equal(status.CurrentStatus))
		Expect(condition(slice, planetv1.ConditionExpiresSoon)(Default)).To(withReason(metav1.ConditionTrue, planetv1.ReasonLastWeek))
		Eventually(expiryEvents(slice)).Should(ConsistOf(warning(planetv1.ReasonLastWeek, slice)))
		Eventually(expirySeconds(slice)).Should(And(
			BeNumerically("<=", (3*24*time.Hour).Seconds()), BeNumerically(">", (3*24*time.Hour-time.Minute).Seconds())))

		By("suspended: no notice")
		Expect(updateSpec(client.ObjectKeyFromObject(slice), slice, func() { slice.Spec.State = planetv1.SliceSuspended })).To(Succeed())
		Eventually(condition(slice, planetv1.ConditionExpiresSoon)).Should(withReason(metav1.ConditionFalse, planetv1.ReasonSuspended))
		Expect(condition(slice, planetv1.ConditionReady)(Default)).To(withReason(metav1.ConditionTrue, planetv1.ReasonSuspended))

		By("resumed in its last week: told again")
		Expect(updateSpec(client.ObjectKeyFromObject(slice), slice, func() { slice.Spec.State = planetv1.SliceActive })).To(Succeed())
		Eventually(condition(slice, planetv1.ConditionExpiresSoon)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonLastWeek))
		Eventually(expiryEvents(slice)).Should(HaveLen(2))

		By("expired: no notice, the Expired condition says it; the metric goes negative")
		Expect(updateSpec(client.ObjectKeyFromObject(slice), slice, func() {
			slice.Spec.ExpiresAt = &metav1.Time{Time: time.Now().Add(2 * time.Second)}
		})).To(Succeed())
		Eventually(condition(slice, planetv1.ConditionExpired), 15*time.Second).Should(withReason(metav1.ConditionTrue, planetv1.ReasonExpired))
		Eventually(condition(slice, planetv1.ConditionExpiresSoon)).Should(withReason(metav1.ConditionFalse, planetv1.ReasonExpired))
		Eventually(expirySeconds(slice)).Should(BeNumerically("<", 0))
		Eventually(expiryEvents(slice)).Should(ContainElement(warning(planetv1.ReasonLastDay, slice)))
	})
})

package controllers_test

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
)

// kubeletRejects fails a pod as a kubelet does when the pod does not fit.
func kubeletRejects(g Gomega, p *corev1.Pod, reason string) {
	p.Status.Phase = corev1.PodFailed
	p.Status.Reason = reason
	p.Status.Message = "Pod was rejected: Node didn't have enough resource: cpu"
	g.Expect(k8s.Status().Update(ctx, p)).To(Succeed())
}

// notReadyOn returns the reason the slice's status gives for a node.
func notReadyOn(slice *planetv1.Slice, node string) func(Gomega) string {
	return func(g Gomega) string {
		got := &planetv1.Slice{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(slice), got)).To(Succeed())
		for _, is := range got.Status.NotReady {
			if is.Node == node {
				return is.Reason
			}
		}
		return ""
	}
}

var _ = Describe("Slice controller under faults", func() {
	It("asks no more than a node has free, and backs off a sliver the kubelet rejects", func() {
		makeSite("fit", nil)
		makeNode("fit-1", "fit", nil) // 4 CPU, 16Gi
		By("a DaemonSet's pod takes 500m and 1Gi of the node")
		agent := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "agent-fit-1"},
			Spec: corev1.PodSpec{NodeName: "fit-1", Containers: []corev1.Container{{Name: "agent", Image: "agent",
				Resources: corev1.ResourceRequirements{Requests: rl("cpu", "500m", "memory", "1Gi")}}}},
		}
		Expect(k8s.Create(ctx, agent)).To(Succeed())
		slice := newSlice("fit", "hog", func(s *planetv1.SliceSpec) { s.CPUShare = 100 })
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		var first *corev1.Pod
		Eventually(func(g Gomega) { first = sliver(g, slice, "fit-1") }).Should(Succeed())
		req := first.Spec.Containers[0].Resources.Requests
		Expect(req.Cpu().Cmp(resource.MustParse("3500m"))).To(BeNumerically("<=", 0), "cpu request %s", req.Cpu())
		Expect(req.Memory().Cmp(resource.MustParse("15Gi"))).To(BeNumerically("<=", 0), "memory request %s", req.Memory())

		By("the first rejection replaces the sliver at once")
		Eventually(func(g Gomega) { kubeletRejects(g, sliver(g, slice, "fit-1"), "OutOfcpu") }).Should(Succeed())
		var second *corev1.Pod
		Eventually(func(g Gomega) {
			second = sliver(g, slice, "fit-1")
			g.Expect(second.UID).NotTo(Equal(first.UID))
		}).Should(Succeed())

		By("the second stays failed, with its reason in the status, until the back-off passes")
		Eventually(func(g Gomega) { kubeletRejects(g, sliver(g, slice, "fit-1"), "OutOfcpu") }).Should(Succeed())
		Eventually(notReadyOn(slice, "fit-1")).Should(Equal("OutOfcpu"))
		uid := func(g Gomega) types.UID { return sliver(g, slice, "fit-1").UID }
		Consistently(uid, 2*time.Second).Should(Equal(second.UID))
		Eventually(uid, 3*testSliverBackoff).ShouldNot(Equal(second.UID))
		Expect(k8s.Delete(ctx, slice)).To(Succeed())
		Expect(k8s.Delete(ctx, agent)).To(Succeed())
	})

	It("follows the pod's reasons as they change", func() {
		makeSite("why", nil)
		makeNode("why-1", "why", nil)
		slice := newSlice("why", "img", nil)
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		for _, reason := range []string{"ContainerCreating", "ErrImagePull", "ImagePullBackOff", "CrashLoopBackOff"} {
			Eventually(func(g Gomega) {
				p := sliver(g, slice, "why-1")
				p.Status.Phase = corev1.PodPending
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "sliver", Image: "img",
					State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "as the kubelet says"}}}}
				g.Expect(k8s.Status().Update(ctx, p)).To(Succeed())
			}).Should(Succeed())
			Eventually(notReadyOn(slice, "why-1")).Should(Equal(reason))
		}
	})

	It("writes the status when a step fails, with the step's reason", func() {
		makeSite("step", nil)
		makeNode("step-1", "step", nil)
		slice := newSlice("step", "ns", nil)
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		Eventually(func(g Gomega) {
			sliver(g, slice, "step-1")
			kubeletStartsSlivers(g, slice)
			g.Expect(condition(slice, planetv1.ConditionReady)(g)).To(withReason(metav1.ConditionTrue, planetv1.ReasonSliversReady))
		}).Should(Succeed())

		By("the slice namespace is deleted by hand (envtest has no namespace controller: it stays Terminating)")
		Expect(k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: naming.SliceNamespace("step", "ns")}})).To(Succeed())
		Eventually(condition(slice, planetv1.ConditionReady)).Should(And(
			withReason(metav1.ConditionFalse, planetv1.ReasonNamespaceTerminating),
			HaveField("Message", ContainSubstring("being deleted")),
		))
		before := reconcileErrors()
		Consistently(reconcileErrors, time.Second).Should(Equal(before), "waiting for a namespace to go is no error")
		Expect(k8s.Delete(ctx, slice)).To(Succeed())
	})

	It("does not name another party's namespace in a conflicting slice's status", func() {
		makeSite("own", nil)
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: naming.SliceNamespace("own", "taken")}})).To(Succeed())
		slice := newSlice("own", "taken", nil)
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		Eventually(condition(slice, planetv1.ConditionReady)).Should(withReason(metav1.ConditionFalse, planetv1.ReasonNamespaceConflict))
		got := &planetv1.Slice{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(slice), got)).To(Succeed())
		Expect(got.Status.Namespace).To(BeEmpty())
	})

	It("runs only maxSlices slices when two are created in the same second", func() {
		makeSite("same", func(s *planetv1.SiteSpec) { s.MaxSlices = ptr.To[int32](1) })
		makeNode("same-1", "same", nil)
		// b is created first, a in the same second: by name, a is the elder.
		var a, b *planetv1.Slice
		for try := 0; ; try++ {
			Expect(try).To(BeNumerically("<", 5), "no two creations in the same second")
			suffix := string(rune('p' + try))
			b = newSlice("same", "b"+suffix, nil)
			a = newSlice("same", "a"+suffix, nil)
			Expect(k8s.Create(ctx, b)).To(Succeed())
			Expect(k8s.Create(ctx, a)).To(Succeed())
			if a.CreationTimestamp.Equal(&b.CreationTimestamp) {
				break
			}
			Expect(k8s.Delete(ctx, a)).To(Succeed())
			Expect(k8s.Delete(ctx, b)).To(Succeed())
		}
		Eventually(condition(b, planetv1.ConditionReady)).Should(withReason(metav1.ConditionFalse, planetv1.ReasonSiteSliceLimit))
		Eventually(sliverNodes(b)).Should(BeEmpty())
		Eventually(sliverNodes(a)).Should(HaveLen(1))
		Consistently(sliverNodes(b), time.Second).Should(BeEmpty())
	})

	It("keeps the other nodes' reservations when one node goes, and when a smaller node joins", func() {
		makeSite("keep", nil)
		for _, n := range []string{"keep-1", "keep-2", "keep-3"} {
			makeNode(n, "keep", nil)
		}
		slice := newSlice("keep", "held", nil)
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		root := newPool("keep", "root", "", rl("cpu", "1", "memory", "1Gi"))
		root.Spec.Nodes = &planetv1.NodeSelection{} // every node of the site, joiners included
		root.Spec.Binding = &planetv1.PoolBinding{Slice: "keep/held", Until: metav1.Time{Time: time.Now().Add(time.Hour)}}
		Expect(k8s.Create(ctx, root)).To(Succeed())
		uids := func(g Gomega) map[string]types.UID {
			kubeletStartsSlivers(g, slice)
			out := map[string]types.UID{}
			for _, n := range []string{"keep-1", "keep-2"} {
				p := sliver(g, slice, n)
				g.Expect(p.Annotations["planetkube.io/reserved-hash"]).NotTo(BeEmpty(), "sliver on %s not reserved yet", n)
				out[n] = p.UID
			}
			return out
		}
		var before map[string]types.UID
		Eventually(func(g Gomega) { before = uids(g) }).Should(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(sliver(g, slice, "keep-3").Annotations["planetkube.io/reserved-hash"]).NotTo(BeEmpty())
		}).Should(Succeed())

		By("node keep-3 goes: the pool loses it alone")
		deleteNode("keep-3")
		Eventually(poolCondition("keep", "root", planetv1.ConditionReady)).Should(HaveField("Status", metav1.ConditionTrue))
		Consistently(uids, 2*time.Second).Should(Equal(before))

		By("a node too small for the pool joins: the pool does not hold it, and nothing else moves")
		small := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "keep-small", Labels: map[string]string{planetv1.LabelSite: "keep"}}}
		Expect(k8s.Create(ctx, small)).To(Succeed())
		small.Status.Allocatable = rl("cpu", "500m", "memory", "16Gi", "pods", "110")
		small.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"}}
		Expect(k8s.Status().Update(ctx, small)).To(Succeed())
		Eventually(poolCondition("keep", "root", planetv1.ConditionOvercommitted)).Should(And(
			HaveField("Status", metav1.ConditionTrue), HaveField("Message", ContainSubstring("node keep-small"))))
		Eventually(poolCondition("keep", "root", planetv1.ConditionReady)).Should(HaveField("Message", ContainSubstring("on 2 of 3 nodes")))
		Eventually(func(g Gomega) {
			g.Expect(sliver(g, slice, "keep-small").Annotations["planetkube.io/reserved-hash"]).To(BeEmpty())
		}).Should(Succeed())
		Consistently(uids, 2*time.Second).Should(Equal(before))
	})

	It("makes no writes once converged, across a manager restart and a resync period", func() {
		makeSite("quiet", func(s *planetv1.SiteSpec) { s.PIs = []planetv1.Subject{{Name: "pi"}} }) // no techs, no users
		makeNode("quiet-1", "quiet", nil)
		makeNode("quiet-2", "quiet", nil)
		slice := newSlice("quiet", "calm", func(s *planetv1.SliceSpec) {
			s.Users = []planetv1.SliceUser{{Name: "alice", SSHKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDx alice"}}}
		})
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		root := newPool("quiet", "root", "", rl("cpu", "1"))
		root.Spec.Nodes = &planetv1.NodeSelection{}
		Expect(k8s.Create(ctx, root)).To(Succeed())
		Eventually(func(g Gomega) {
			kubeletStartsSlivers(g, slice)
			g.Expect(condition(slice, planetv1.ConditionReady)(g)).To(withReason(metav1.ConditionTrue, planetv1.ReasonSliversReady))
			g.Expect(poolCondition("quiet", "root", planetv1.ConditionReady)(g)).To(HaveField("Status", metav1.ConditionTrue))
		}).Should(Succeed())
		versions := func(g Gomega) map[string]string {
			out := map[string]string{}
			add := func(list client.ObjectList, opts ...client.ListOption) {
				g.Expect(k8s.List(ctx, list, opts...)).To(Succeed())
				items, err := meta.ExtractList(list)
				g.Expect(err).NotTo(HaveOccurred())
				for _, item := range items {
					o, err := meta.Accessor(item)
					g.Expect(err).NotTo(HaveOccurred())
					out[fmt.Sprintf("%T %s/%s", item, o.GetNamespace(), o.GetName())] = o.GetResourceVersion()
				}
			}
			sliceNS := naming.SliceNamespace("quiet", "calm")
			add(&planetv1.SiteList{})
			add(&planetv1.SliceList{}, client.InNamespace("quiet"))
			add(&planetv1.ResourcePoolList{}, client.InNamespace("quiet"))
			add(&corev1.NamespaceList{}, client.MatchingLabels{planetv1.LabelSite: "quiet"})
			add(&corev1.PodList{}, client.InNamespace(sliceNS))
			add(&corev1.SecretList{}, client.InNamespace(sliceNS))
			add(&rbacv1.RoleBindingList{}, client.InNamespace("quiet"))
			add(&rbacv1.RoleBindingList{}, client.InNamespace(sliceNS))
			return out
		}
		var before map[string]string
		Eventually(func(g Gomega) {
			before = versions(g)
			g.Expect(versions(g)).To(Equal(before))
		}).Should(Succeed())

		By("the manager restarts")
		stopManager()
		startManager()
		mark := writes.count()
		By("a resync period passes")
		Consistently(func() []string { return writes.since(mark, "quiet") }, 2*testSyncPeriod+time.Second).Should(BeEmpty())
		Expect(versions(Default)).To(Equal(before))
	})
})

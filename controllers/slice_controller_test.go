package controllers_test

import (
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
)

// newSlice returns a Slice in a site's namespace, changed by mutate.
func newSlice(site, name string, mutate func(*planetv1.SliceSpec)) *planetv1.Slice {
	s := &planetv1.Slice{
		ObjectMeta: metav1.ObjectMeta{Namespace: site, Name: name},
		Spec: planetv1.SliceSpec{
			Description: "test slice " + name,
			Nodes:       planetv1.SliceNodes{NodeSelection: planetv1.NodeSelection{Sites: []string{site}}},
			Template:    planetv1.SliverTemplate{Image: "registry.k8s.io/pause:3.10"},
		},
	}
	if mutate != nil {
		mutate(&s.Spec)
	}
	return s
}

// makeSite creates a site and waits for its namespace.
func makeSite(name string, mutate func(*planetv1.SiteSpec)) *planetv1.Site {
	GinkgoHelper()
	s := &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if mutate != nil {
		mutate(&s.Spec)
	}
	Expect(k8s.Create(ctx, s)).To(Succeed())
	Eventually(func() error { return k8s.Get(ctx, client.ObjectKey{Name: name}, &corev1.Namespace{}) }).Should(Succeed())
	return s
}

// sliverNodes returns the node of every live sliver of a slice, by pod name.
func sliverNodes(slice *planetv1.Slice) func(Gomega) map[string]string {
	return func(g Gomega) map[string]string {
		pods := &corev1.PodList{}
		g.Expect(k8s.List(ctx, pods, client.InNamespace(naming.SliceNamespace(slice.Namespace, slice.Name)))).To(Succeed())
		out := map[string]string{}
		for _, p := range pods.Items {
			if p.DeletionTimestamp.IsZero() {
				out[p.Name] = p.Spec.NodeName
			}
		}
		return out
	}
}

// sliversOn is what sliverNodes returns when the slice has one sliver on each node.
func sliversOn(slice string, nodes ...string) map[string]string {
	out := map[string]string{}
	for _, n := range nodes {
		out[naming.SliverName(slice, n)] = n
	}
	return out
}

// condition returns a condition of the slice, read afresh.
func condition(slice *planetv1.Slice, t string) func(Gomega) *metav1.Condition {
	return func(g Gomega) *metav1.Condition {
		got := &planetv1.Slice{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(slice), got)).To(Succeed())
		c := meta.FindStatusCondition(got.Status.Conditions, t)
		g.Expect(c).NotTo(BeNil(), "no %s condition yet", t)
		return c
	}
}

// withReason matches a condition's status and reason.
func withReason(status metav1.ConditionStatus, reason string) OmegaMatcher {
	return And(HaveField("Status", status), HaveField("Reason", reason))
}

// markSliversReady sets every sliver of the slice Running and Ready, as a kubelet would.
func markSliversReady(slice *planetv1.Slice) {
	GinkgoHelper()
	pods := &corev1.PodList{}
	Expect(k8s.List(ctx, pods, client.InNamespace(naming.SliceNamespace(slice.Namespace, slice.Name)))).To(Succeed())
	for i := range pods.Items {
		p := &pods.Items[i]
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		Expect(k8s.Status().Update(ctx, p)).To(Succeed())
	}
}

// reconcileErrors reads the slice controller's reconcile error counter, and
// fails the test when the metric is missing (a renamed metric must not pass
// as zero errors).
func reconcileErrors() float64 {
	GinkgoHelper()
	families, err := ctrlmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_errors_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabel(m, "controller", "slice") {
				return m.GetCounter().GetValue()
			}
		}
	}
	Fail("no controller_runtime_reconcile_errors_total{controller=\"slice\"} in the registry")
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

var _ = Describe("Slice controller", func() {
	It("runs one sliver on every Ready node of the chosen sites, and follows nodes", func() {
		makeSite("sa", nil)
		makeSite("sb", nil)
		makeSite("sc", nil)
		for _, n := range []string{"sa-1", "sa-2"} {
			makeNode(n, "sa", nil)
		}
		makeNode("sb-1", "sb", nil)
		makeNode("sc-1", "sc", nil) // a site the slice does not choose
		makeNode("sb-down", "sb", nil)
		setNodeReady(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "sb-down"}}, corev1.ConditionFalse)

		slice := newSlice("sa", "web", func(s *planetv1.SliceSpec) {
			s.Nodes.Sites = []string{"sa", "sb"}
			s.CPUShare = 2
			s.Users = []planetv1.SliceUser{{Name: "ann", SSHKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ann@lab"}}}
		})
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		Eventually(sliverNodes(slice)).Should(Equal(sliversOn("web", "sa-1", "sa-2", "sb-1")))

		nsName := naming.SliceNamespace("sa", "web")
		By("the slice namespace, its access and its keys")
		ns := &corev1.Namespace{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: nsName}, ns)).To(Succeed())
		Expect(ns.Labels).To(HaveKeyWithValue(planetv1.LabelSlice, "web"))
		Expect(ns.Labels).To(HaveKeyWithValue(planetv1.LabelSite, "sa"))
		Expect(ns.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "baseline"))
		rb := &rbacv1.RoleBinding{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: nsName, Name: naming.SliceUsersRoleBinding}, rb)).To(Succeed())
		Expect(rb.RoleRef.Name).To(Equal(naming.SliceUserClusterRole))
		Expect(rb.Subjects).To(ConsistOf(HaveField("Name", "ann")))
		secret := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: nsName, Name: naming.AuthorizedKeysSecret}, secret)).To(Succeed())
		Expect(string(secret.Data["authorized_keys"])).To(ContainSubstring("ann@lab"))

		By("each sliver: node, owner, labels, cpu from the share, no privilege, keys mounted")
		pod := &corev1.Pod{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: nsName, Name: naming.SliverName("web", "sa-1")}, pod)).To(Succeed())
		Expect(pod.Spec.NodeName).To(Equal("sa-1"))
		Expect(pod.Labels).To(HaveKeyWithValue(planetv1.LabelSlice, "web"))
		Expect(pod.OwnerReferences).To(ConsistOf(HaveField("Name", nsName)))
		Expect(pod.Spec.Containers[0].Resources.Requests.Cpu().MilliValue()).To(BeEquivalentTo(80)) // 4 cores * 2 / 100
		Expect(*pod.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation).To(BeFalse())
		Expect(pod.Spec.HostNetwork).To(BeFalse())
		Expect(pod.Spec.Containers[0].VolumeMounts).To(ContainElement(HaveField("MountPath", "/etc/planetkube/ssh")))

		By("status: full name, counts, the not-ready node with its reason")
		Eventually(func(g Gomega) {
			got := &planetv1.Slice{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(slice), got)).To(Succeed())
			g.Expect(got.Status.FullName).To(Equal("plc.sa.web"))
			g.Expect(got.Status.Namespace).To(Equal(nsName))
			g.Expect(got.Status.DesiredSlivers).To(BeEquivalentTo(3))
			g.Expect(got.Status.ReadySlivers).To(BeEquivalentTo(0))
			g.Expect(got.Status.NotReady).To(ContainElement(And(HaveField("Node", "sb-down"), HaveField("Reason", "NodeNotReady"))))
			g.Expect(got.Status.ExpiresAt.Time).To(BeTemporally("~", got.CreationTimestamp.Add(14*24*time.Hour), time.Second))
		}).Should(Succeed())
		Eventually(condition(slice, planetv1.ConditionReady)).Should(withReason(metav1.ConditionFalse, "SliversPending"))
		markSliversReady(slice)
		Eventually(condition(slice, planetv1.ConditionReady)).Should(withReason(metav1.ConditionTrue, "SliversReady"))

		By("a node that joins gets a sliver; one that becomes Ready too; one deleted loses it")
		makeNode("sb-2", "sb", nil)
		setNodeReady(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "sb-down"}}, corev1.ConditionTrue)
		Eventually(sliverNodes(slice)).Should(Equal(sliversOn("web", "sa-1", "sa-2", "sb-1", "sb-2", "sb-down")))
		deleteNode("sa-2")
		Eventually(sliverNodes(slice)).Should(Equal(sliversOn("web", "sa-1", "sb-1", "sb-2", "sb-down")))

		By("a sliver and the keys Secret deleted by hand come back")
		Expect(k8s.Delete(ctx, secret)).To(Succeed())
		Expect(k8s.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: nsName, Name: naming.SliverName("web", "sa-1")}})).To(Succeed())
		Eventually(sliverNodes(slice)).Should(HaveKeyWithValue(naming.SliverName("web", "sa-1"), "sa-1"))
		Eventually(func() error {
			return k8s.Get(ctx, client.ObjectKey{Namespace: nsName, Name: naming.AuthorizedKeysSecret}, &corev1.Secret{})
		}).Should(Succeed())

		By("suspend removes the slivers and keeps the rest; resume brings them back")
		Expect(updateSpec(client.ObjectKeyFromObject(slice), slice, func() { slice.Spec.State = planetv1.SliceSuspended })).To(Succeed())
		Eventually(sliverNodes(slice)).Should(BeEmpty())
		Eventually(condition(slice, planetv1.ConditionSuspended)).Should(withReason(metav1.ConditionTrue, "Suspended"))
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: nsName, Name: naming.SliceUsersRoleBinding}, rb)).To(Succeed())
		Expect(updateSpec(client.ObjectKeyFromObject(slice), slice, func() { slice.Spec.State = planetv1.SliceActive })).To(Succeed())
		Eventually(sliverNodes(slice)).Should(HaveLen(4))

		By("delete: the slice namespace goes and the Slice is released")
		Expect(k8s.Delete(ctx, slice)).To(Succeed())
		Eventually(func() error { return k8s.Get(ctx, client.ObjectKeyFromObject(slice), &planetv1.Slice{}) }).Should(Satisfy(apierrors.IsNotFound))
		// envtest runs no namespace controller: the namespace stays Terminating.
		Expect(k8s.Get(ctx, client.ObjectKey{Name: nsName}, ns)).To(Succeed())
		Expect(ns.DeletionTimestamp.IsZero()).To(BeFalse())
	})

	It("expires slivers at expiry and brings them back on renewal, refusing renewals past 8 weeks", func() {
		makeSite("ex", nil)
		makeNode("ex-1", "ex", nil)
		slice := newSlice("ex", "short", func(s *planetv1.SliceSpec) {
			s.ExpiresAt = &metav1.Time{Time: time.Now().Add(4 * time.Second)}
		})
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		Eventually(sliverNodes(slice)).Should(HaveLen(1))
		Eventually(condition(slice, planetv1.ConditionExpired)).Should(withReason(metav1.ConditionFalse, "NotExpired"))
		Eventually(condition(slice, planetv1.ConditionExpired), 15*time.Second).Should(withReason(metav1.ConditionTrue, "Expired"))
		Eventually(sliverNodes(slice)).Should(BeEmpty())
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(slice), &planetv1.Slice{})).To(Succeed())

		By("a renewal past 8 weeks is refused and the old expiry stays")
		Expect(updateSpec(client.ObjectKeyFromObject(slice), slice, func() { slice.Spec.ExpiresAt = &metav1.Time{Time: time.Now().Add(57 * 24 * time.Hour)} })).To(Succeed())
		Eventually(condition(slice, planetv1.ConditionReady)).Should(And(withReason(metav1.ConditionFalse, "InvalidExpiry"), HaveField("Message", ContainSubstring("more than 8 weeks ahead"))))
		Consistently(sliverNodes(slice), 2*time.Second).Should(BeEmpty())

		By("a renewal within 8 weeks brings the slivers back")
		Expect(updateSpec(client.ObjectKeyFromObject(slice), slice, func() { slice.Spec.ExpiresAt = &metav1.Time{Time: time.Now().Add(7 * 24 * time.Hour)} })).To(Succeed())
		Eventually(sliverNodes(slice)).Should(HaveLen(1))
		Eventually(condition(slice, planetv1.ConditionExpired)).Should(withReason(metav1.ConditionFalse, "NotExpired"))
	})

	It("refuses an expiry in the past at creation, keeping the default", func() {
		makeSite("past", nil)
		makeNode("past-1", "past", nil)
		slice := newSlice("past", "late", func(s *planetv1.SliceSpec) {
			s.ExpiresAt = &metav1.Time{Time: time.Now().Add(-time.Hour)}
		})
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		Eventually(condition(slice, planetv1.ConditionReady)).Should(And(withReason(metav1.ConditionFalse, "InvalidExpiry"), HaveField("Message", ContainSubstring("in the past"))))
		Eventually(sliverNodes(slice)).Should(HaveLen(1))
	})

	It("gives no slivers to slices of a disabled site, past the site's limit, or outside a site", func() {
		makeSite("lim", func(s *planetv1.SiteSpec) { s.MaxSlices = ptr.To[int32](1) })
		makeNode("lim-1", "lim", nil)
		first := newSlice("lim", "first", nil)
		Expect(k8s.Create(ctx, first)).To(Succeed())
		Eventually(sliverNodes(first)).Should(HaveLen(1))
		second := newSlice("lim", "second", nil)
		Expect(k8s.Create(ctx, second)).To(Succeed())
		Eventually(condition(second, planetv1.ConditionReady)).Should(And(withReason(metav1.ConditionFalse, "SiteSliceLimit"), HaveField("Message", ContainSubstring("limit of 1 slices"))))
		Consistently(sliverNodes(second), time.Second).Should(BeEmpty())

		By("deleting the first slice frees the slot")
		Expect(k8s.Delete(ctx, first)).To(Succeed())
		Eventually(sliverNodes(second)).Should(HaveLen(1))

		By("disabling the site stops its slices")
		site := &planetv1.Site{}
		Expect(updateSpec(client.ObjectKey{Name: "lim"}, site, func() { site.Spec.State = planetv1.SiteDisabled })).To(Succeed())
		Eventually(condition(second, planetv1.ConditionReady)).Should(withReason(metav1.ConditionFalse, "SiteDisabled"))
		Eventually(sliverNodes(second)).Should(BeEmpty())

		By("a slice in a namespace that is no site's")
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "nosite"}})).To(Succeed())
		orphan := newSlice("nosite", "lost", nil)
		Expect(k8s.Create(ctx, orphan)).To(Succeed())
		Eventually(condition(orphan, planetv1.ConditionReady)).Should(withReason(metav1.ConditionFalse, "SiteNotFound"))
		Expect(k8s.Get(ctx, client.ObjectKey{Name: naming.SliceNamespace("nosite", "lost")}, &corev1.Namespace{})).To(Satisfy(apierrors.IsNotFound))
	})

	It("says it waits when every matching node is not ready (Reconciling, not Stalled)", func() {
		makeSite("dark", nil)
		setNodeReady(makeNode("dark-1", "dark", nil), corev1.ConditionFalse)
		slice := newSlice("dark", "waiting", nil)
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		Eventually(condition(slice, planetv1.ConditionReady)).Should(withReason(metav1.ConditionFalse, planetv1.ReasonNoReadyNodes))
		Eventually(condition(slice, planetv1.ConditionReconciling)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonNoReadyNodes))
	})

	It("says so when the node selection matches nothing, without an error loop", func() {
		makeSite("empty", nil)
		slice := newSlice("empty", "nowhere", func(s *planetv1.SliceSpec) {
			s.Nodes.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"gpu": "h100"}}
		})
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		Eventually(condition(slice, planetv1.ConditionReady)).Should(withReason(metav1.ConditionFalse, "NoMatchingNodes"))
		before := reconcileErrors()
		Consistently(reconcileErrors, 2*time.Second).Should(Equal(before))

		By("a node that starts matching gets the sliver")
		makeNode("empty-gpu", "empty", map[string]string{"gpu": "h100"})
		Eventually(sliverNodes(slice)).Should(Equal(sliversOn("nowhere", "empty-gpu")))
	})

	It("caps the slivers at maxNodes, spread across sites", func() {
		for _, s := range []string{"capa", "capb"} {
			makeSite(s, nil)
			for i := 1; i <= 3; i++ {
				makeNode(fmt.Sprintf("%s-%d", s, i), s, nil)
			}
		}
		slice := newSlice("capa", "few", func(s *planetv1.SliceSpec) {
			s.Nodes.Sites = []string{"capa", "capb"}
			s.Nodes.MaxNodes = ptr.To[int32](4)
		})
		Expect(k8s.Create(ctx, slice)).To(Succeed())
		Eventually(sliverNodes(slice)).Should(Equal(sliversOn("few", "capa-1", "capa-2", "capb-1", "capb-2")))
	})

	DescribeTable("refuses invalid slices",
		func(obj map[string]any, msg string) {
			makeSiteOnce("bad")
			u := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "planetkube.io/v1alpha1", "kind": "Slice",
				"metadata": map[string]any{"namespace": "bad", "name": "ok"},
				"spec":     map[string]any{"template": map[string]any{"image": "pause"}},
			}}
			for k, v := range obj {
				Expect(unstructured.SetNestedField(u.Object, v, strings.Split(k, ".")...)).To(Succeed())
			}
			err := k8s.Create(ctx, u, client.FieldValidation("Strict"))
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(msg))
		},
		Entry("a name over 64 characters", map[string]any{"metadata.name": "a123456789012345678901234567890123456789012345678901234567890abcd"}, "at most 64 lowercase letters"),
		Entry("an upper-case name", map[string]any{"metadata.name": "Web"}, "at most 64 lowercase letters"),
		Entry("a privileged template", map[string]any{"spec.template.securityContext": map[string]any{"privileged": true}}, `unknown field "spec.template.securityContext"`),
		Entry("host networking", map[string]any{"spec.template.hostNetwork": true}, `unknown field "spec.template.hostNetwork"`),
		Entry("a zero cpu share", map[string]any{"spec.cpuShare": int64(0)}, "spec.cpuShare"),
		Entry("an unknown state", map[string]any{"spec.state": "Paused"}, "spec.state"),
		Entry("a bad SSH key", map[string]any{"spec.users": []any{map[string]any{"name": "x", "sshKeys": []any{"not a key"}}}}, "sshKeys"),
		Entry("a zero maxNodes", map[string]any{"spec.nodes": map[string]any{"maxNodes": int64(0)}}, "maxNodes"),
	)
})

var madeSites = map[string]bool{}

// makeSiteOnce makes a site the first time it is asked for.
func makeSiteOnce(name string) {
	GinkgoHelper()
	if !madeSites[name] {
		makeSite(name, nil)
		madeSites[name] = true
	}
}

package controllers_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
)

var _ = Describe("Site controller", func() {
	It("makes the site namespace and role bindings, and counts nodes and slices", func() {
		site := &planetv1.Site{
			ObjectMeta: metav1.ObjectMeta{Name: "alpha"},
			Spec: planetv1.SiteSpec{
				DisplayName: "Alpha University",
				PIs:         []planetv1.Subject{{Name: "pi-alpha"}},
				Techs:       []planetv1.Subject{{Name: "tech-alpha"}, {Kind: planetv1.SubjectGroup, Name: "alpha-ops"}},
			},
		}
		Expect(k8s.Create(ctx, site)).To(Succeed())
		makeNode("alpha-1", "alpha", nil)
		makeNode("alpha-2", "alpha", nil)

		ns := &corev1.Namespace{}
		Eventually(func() error { return k8s.Get(ctx, client.ObjectKey{Name: "alpha"}, ns) }).Should(Succeed())
		Expect(ns.Labels).To(HaveKeyWithValue(planetv1.LabelSite, "alpha"))
		Expect(metav1.IsControlledBy(ns, site)).To(BeTrue())

		rb := &rbacv1.RoleBinding{}
		Eventually(func() error {
			return k8s.Get(ctx, client.ObjectKey{Namespace: "alpha", Name: "planetkube-site-tech"}, rb)
		}).Should(Succeed())
		Expect(rb.RoleRef.Name).To(Equal("planetkube-site-tech"))
		Expect(rb.Subjects).To(ConsistOf(
			rbacv1.Subject{Kind: "User", APIGroup: rbacv1.GroupName, Name: "tech-alpha"},
			rbacv1.Subject{Kind: "Group", APIGroup: rbacv1.GroupName, Name: "alpha-ops"},
		))
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "alpha", Name: "planetkube-site-user"}, rb)).To(Satisfy(apierrors.IsNotFound))

		Expect(k8s.Create(ctx, newSlice("alpha", "one", nil))).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(site), site)).To(Succeed())
			g.Expect(site.Status.Nodes).To(BeEquivalentTo(2))
			g.Expect(site.Status.ReadyNodes).To(BeEquivalentTo(2))
			g.Expect(site.Status.Slices).To(BeEquivalentTo(1))
			g.Expect(site.Status.ObservedGeneration).To(Equal(site.Generation))
			g.Expect(meta.IsStatusConditionTrue(site.Status.Conditions, planetv1.ConditionReady)).To(BeTrue())
		}).Should(Succeed())

		By("removing the techs, their binding goes")
		Expect(updateSpec(client.ObjectKeyFromObject(site), site, func() { site.Spec.Techs = nil })).To(Succeed())
		Eventually(func() error {
			return k8s.Get(ctx, client.ObjectKey{Namespace: "alpha", Name: "planetkube-site-tech"}, rb)
		}).Should(Satisfy(apierrors.IsNotFound))

		By("a node going NotReady lowers the ready count")
		setNodeReady(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "alpha-2"}}, corev1.ConditionFalse)
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(site), site)).To(Succeed())
			g.Expect(site.Status.ReadyNodes).To(BeEquivalentTo(1))
		}).Should(Succeed())
	})

	It("writes zero counts, so that kubectl shows 0 rather than nothing", func() {
		site := &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "empty0"}}
		Expect(k8s.Create(ctx, site)).To(Succeed())
		Eventually(func(g Gomega) {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(planetv1.GroupVersion.WithKind("Site"))
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "empty0"}, u)).To(Succeed())
			slices, found, err := unstructured.NestedInt64(u.Object, "status", "slices")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(found).To(BeTrue(), "status.slices is not written")
			g.Expect(slices).To(BeZero())
		}).Should(Succeed())
	})

	It("reports a namespace that is not the site's instead of taking it over", func() {
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "taken"}})).To(Succeed())
		site := &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "taken"}}
		Expect(k8s.Create(ctx, site)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(site), site)).To(Succeed())
			c := meta.FindStatusCondition(site.Status.Conditions, planetv1.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal("NamespaceConflict"))
		}).Should(Succeed())
	})

	DescribeTable("refuses invalid sites",
		func(site *planetv1.Site, msg string) {
			err := k8s.Create(ctx, site)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
			Expect(err.Error()).To(ContainSubstring(msg))
		},
		Entry("a name over 32 characters", &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "abcdefghijklmnopqrstuvwxyz0123456"}}, "1 to 32 lowercase letters and digits"),
		Entry("a name with a dash", &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "uni-x"}}, "1 to 32 lowercase letters and digits"),
		Entry("the name default", &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, "cannot be named default"),
		Entry("a negative maxSlices", &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "neg"}, Spec: planetv1.SiteSpec{MaxSlices: ptr.To[int32](-1)}}, "maxSlices"),
		Entry("a bad URL", &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "badurl"}, Spec: planetv1.SiteSpec{URL: "ftp://x"}}, "spec.url"),
		Entry("a service account without namespace", &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "sa"}, Spec: planetv1.SiteSpec{PIs: []planetv1.Subject{{Kind: planetv1.SubjectServiceAccount, Name: "bot"}}}}, "namespace is set for, and only for, kind ServiceAccount"),
	)
})

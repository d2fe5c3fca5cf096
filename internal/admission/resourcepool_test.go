package admission_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/scheme"
)

// sites counts the sites made by newSite, so that every test has its own.
var sites atomic.Int32

// newSite creates a site's namespace with n nodes (4 cpu, 16Gi, 110 pods
// each) and returns the site's name and its nodes' names.
func newSite(n int) (string, []string) {
	site := fmt.Sprintf("site%d", sites.Add(1))
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: site}})).To(Succeed())
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-n%d", site, i)
		newNode(names[i], site)
	}
	return site, names
}

// newNode creates a node of a site with its allocatable set, and waits for
// the manager's cache (which the webhook reads nodes from) to see it.
func newNode(name, site string) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{planetv1.LabelSite: site}}}
	Expect(k8s.Create(ctx, n)).To(Succeed())
	n.Status.Allocatable = corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	Expect(k8s.Status().Update(ctx, n)).To(Succeed())
	Eventually(func(g Gomega) {
		got := &corev1.Node{}
		g.Expect(cached.Get(ctx, client.ObjectKeyFromObject(n), got)).To(Succeed())
		g.Expect(got.Status.Allocatable).To(HaveKey(corev1.ResourceCPU))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
}

// rootPool is a root pool in site over the named nodes, holding cpu on each.
func rootPool(site, name, cpu string, nodes ...string) *planetv1.ResourcePool {
	return &planetv1.ResourcePool{
		ObjectMeta: metav1.ObjectMeta{Namespace: site, Name: name},
		Spec: planetv1.ResourcePoolSpec{
			Nodes:   &planetv1.NodeSelection{Names: nodes},
			PerNode: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)},
		},
	}
}

// subPool is a sub-pool of parent over all the parent's nodes.
func subPool(site, name, parent, cpu string) *planetv1.ResourcePool {
	return &planetv1.ResourcePool{
		ObjectMeta: metav1.ObjectMeta{Namespace: site, Name: name},
		Spec: planetv1.ResourcePoolSpec{
			Parent:  parent,
			PerNode: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)},
		},
	}
}

// bound returns p bound to slice until a time.
func bound(p *planetv1.ResourcePool, slice string, until time.Time) *planetv1.ResourcePool {
	p.Spec.Binding = &planetv1.PoolBinding{Slice: slice, Until: metav1.Time{Time: until}}
	return p
}

// invalidWith matches an Invalid error whose message has every part.
func invalidWith(parts ...string) OmegaMatcher {
	return matchError(apierrors.IsInvalid, parts)
}

// forbiddenWith matches a Forbidden error whose message has every part.
func forbiddenWith(parts ...string) OmegaMatcher {
	return matchError(apierrors.IsForbidden, parts)
}

func matchError(is func(error) bool, parts []string) OmegaMatcher {
	ms := []OmegaMatcher{HaveOccurred(), Satisfy(is)}
	for _, p := range parts {
		ms = append(ms, MatchError(ContainSubstring(p)))
	}
	return And(ms...)
}

var _ = Describe("ResourcePool admission", func() {
	It("admits a root pool over its own site's nodes", func() {
		site, nodes := newSite(2)
		Expect(k8s.Create(ctx, rootPool(site, "root", "2", nodes...))).To(Succeed())
	})

	It("refuses a root pool over another site's nodes, or over none", func() {
		a, _ := newSite(1)
		b, bNodes := newSite(1)
		Expect(k8s.Create(ctx, rootPool(a, "theirs", "1", bNodes[0]))).To(invalidWith(
			"spec.nodes", fmt.Sprintf("node %s belongs to site %s, not %s", bNodes[0], b, a)))

		other := rootPool(a, "other-site", "1")
		other.Spec.Nodes = &planetv1.NodeSelection{Sites: []string{b}}
		Expect(k8s.Create(ctx, other)).To(invalidWith(fmt.Sprintf("cannot take nodes of site %s", b)))

		empty, _ := newSite(0)
		none := rootPool(empty, "none", "1")
		none.Spec.Nodes = &planetv1.NodeSelection{}
		Expect(k8s.Create(ctx, none)).To(invalidWith("matches no node of site " + empty))
	})

	It("refuses a root pool larger than its nodes, naming the node and resource", func() {
		site, nodes := newSite(1)
		Expect(k8s.Create(ctx, rootPool(site, "big", "5", nodes...))).To(invalidWith(
			"spec.perNode", fmt.Sprintf("node %s: cpu: 5 requested, 4 free of node capacity", nodes[0])))
	})

	It("refuses a second root pool that would overflow a node, and a grown first one", func() {
		site, nodes := newSite(2)
		first := rootPool(site, "first", "3", nodes...)
		Expect(k8s.Create(ctx, first)).To(Succeed())
		Expect(k8s.Create(ctx, rootPool(site, "second", "2", nodes[1]))).To(invalidWith(
			fmt.Sprintf("node %s: cpu: 2 requested, 1 free of node capacity", nodes[1])))
		Expect(k8s.Create(ctx, rootPool(site, "third", "1", nodes[1]))).To(Succeed())

		// An update is judged after the existing pools: it may not take what
		// "third" holds.
		first.Spec.PerNode[corev1.ResourceCPU] = resource.MustParse("4")
		Expect(k8s.Update(ctx, first)).To(invalidWith(
			fmt.Sprintf("node %s: cpu: 4 requested, 3 free of node capacity", nodes[1])))
	})

	It("refuses a sub-pool whose parent does not exist", func() {
		site, _ := newSite(1)
		Expect(k8s.Create(ctx, subPool(site, "orphan", "missing", "1"))).To(invalidWith(
			"spec.parent", "parent pool missing not found in namespace "+site))
	})

	It("refuses a sub-pool over its parent's amount, and a parent shrunk below its sub-pools", func() {
		site, nodes := newSite(1)
		root := rootPool(site, "root", "2", nodes...)
		Expect(k8s.Create(ctx, root)).To(Succeed())
		Expect(k8s.Create(ctx, subPool(site, "huge", "root", "3"))).To(invalidWith(
			fmt.Sprintf("node %s: cpu: 3 requested, 2 free in parent %s/root", nodes[0], site)))
		Expect(k8s.Create(ctx, subPool(site, "half", "root", "1"))).To(Succeed())
		Expect(k8s.Create(ctx, subPool(site, "more", "root", "2"))).To(invalidWith(
			fmt.Sprintf("node %s: cpu: 2 requested, 1 free in parent %s/root", nodes[0], site)))

		outside := subPool(site, "outside", "root", "1")
		_, others := newSite(1)
		outside.Spec.Nodes = &planetv1.NodeSelection{Names: others}
		Expect(k8s.Create(ctx, outside)).To(invalidWith(fmt.Sprintf("node %s is not held by parent %s/root", others[0], site)))

		root.Spec.PerNode[corev1.ResourceCPU] = resource.MustParse("500m")
		Expect(k8s.Update(ctx, root)).To(invalidWith(fmt.Sprintf("would take pool %s/half out of service", site)))
	})

	It("refuses deleting a parent that has sub-pools, until they are deleted", func() {
		site, nodes := newSite(1)
		root := rootPool(site, "root", "2", nodes...)
		child := subPool(site, "child", "root", "1")
		Expect(k8s.Create(ctx, root)).To(Succeed())
		Expect(k8s.Create(ctx, child)).To(Succeed())

		Expect(k8s.Delete(ctx, root)).To(forbiddenWith("pool root still has sub-pool child: delete its sub-pools first"))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(root), &planetv1.ResourcePool{})).To(Succeed())

		Expect(k8s.Delete(ctx, child)).To(Succeed())
		Expect(k8s.Delete(ctx, root)).To(Succeed())
	})

	It("refuses deleting a pool with an active binding, until the binding is removed", func() {
		site, nodes := newSite(1)
		p := bound(rootPool(site, "bound", "1", nodes...), "default/probe", time.Now().Add(time.Hour))
		Expect(k8s.Create(ctx, p)).To(Succeed())

		Expect(k8s.Delete(ctx, p)).To(forbiddenWith("the binding to default/probe runs until", "remove the binding first"))

		p.Spec.Binding = nil
		Expect(k8s.Update(ctx, p)).To(Succeed())
		Expect(k8s.Delete(ctx, p)).To(Succeed())
	})

	It("refuses a binding to a missing slice, or one that has already ended", func() {
		site, nodes := newSite(1)
		Expect(k8s.Create(ctx, bound(rootPool(site, "nobody", "1", nodes...), "default/nope", time.Now().Add(time.Hour)))).To(
			invalidWith("spec.binding.slice", "slice default/nope not found"))
		Expect(k8s.Create(ctx, bound(rootPool(site, "ended", "1", nodes...), "default/probe", time.Now().Add(-time.Minute)))).To(
			invalidWith("spec.binding.until", "is not in the future"))
	})

	It("refuses an allocation to an authority the site does not trust, and deleting one until it is removed", func() {
		site, nodes := newSite(1)
		alloc := func(name, authority string) *planetv1.ResourcePool {
			p := rootPool(site, name, "1", nodes...)
			p.Spec.Binding = &planetv1.PoolBinding{Authority: authority}
			return p
		}
		Expect(k8s.Create(ctx, alloc("ple", "ple"))).To(invalidWith("spec.binding.authority", "site "+site+" does not trust authority ple", "trust it first"))
		Expect(k8s.Create(ctx, alloc("own", "plc"))).To(Succeed(), "a site with no Site object trusts the local authority")
		Expect(k8s.Create(ctx, &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: site}, Spec: planetv1.SiteSpec{
			State: planetv1.SiteDisabled, TrustedAuthorities: []string{"plc", "ple"},
		}})).To(Succeed())
		delegate := alloc("ple", "ple.fr")
		Expect(k8s.Create(ctx, delegate)).To(Succeed(), "a delegate of a trusted authority, on a disabled site that still trusts it")

		Expect(k8s.Delete(ctx, delegate)).To(forbiddenWith("allocated to authority ple.fr", "remove the binding first"))
		delegate.Spec.Binding = nil
		Expect(k8s.Update(ctx, delegate)).To(Succeed())
		Expect(k8s.Delete(ctx, delegate)).To(Succeed())
	})

	It("refuses by CEL an allocation on a sub-pool, a binding to both a slice and an authority, and a slice binding with no end", func() {
		site, nodes := newSite(1)
		Expect(k8s.Create(ctx, rootPool(site, "root", "2", nodes...))).To(Succeed())
		sub := subPool(site, "sub", "root", "1")
		sub.Spec.Binding = &planetv1.PoolBinding{Authority: "plc"}
		Expect(k8s.Create(ctx, sub)).To(invalidWith("only a root pool (no parent) is allocated to an authority"))
		both := bound(rootPool(site, "both", "1", nodes...), "default/probe", time.Now().Add(time.Hour))
		both.Spec.Binding.Authority = "plc"
		Expect(k8s.Create(ctx, both)).To(invalidWith("a binding names either a slice or an authority"))
		endless := rootPool(site, "endless", "1", nodes...)
		endless.Spec.Binding = &planetv1.PoolBinding{Slice: "default/probe"}
		Expect(k8s.Create(ctx, endless)).To(invalidWith("a binding to a slice ends: set until"))
		Expect(k8s.Create(ctx, rootPool(site, "bad", "1", nodes...))).To(Succeed())
		bad := &planetv1.ResourcePool{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: site, Name: "bad"}, bad)).To(Succeed())
		bad.Spec.Binding = &planetv1.PoolBinding{Authority: "PLE_"}
		Expect(k8s.Update(ctx, bad)).To(invalidWith("spec.binding.authority"))
	})

	Describe("with the site roles (impersonation)", func() {
		It("lets a tech pool only their own site's nodes, and a user pool nothing", func() {
			applyUserRoles()
			a, aNodes := newSite(1)
			b, bNodes := newSite(1)
			bindRole(a, "tech-"+a, "planetkube-site-tech")
			bindRole(a, "user-"+a, "planetkube-site-user")
			tech, user := clientAs("tech-"+a), clientAs("user-"+a)

			// The RoleBinding takes a moment to reach the authorizer.
			Eventually(func() error { return tech.Create(ctx, rootPool(a, "mine", "1", aNodes...)) }, 10*time.Second, 100*time.Millisecond).Should(Succeed())
			Expect(tech.Create(ctx, rootPool(a, "theirs", "1", bNodes...))).To(invalidWith(
				fmt.Sprintf("node %s belongs to site %s, not %s", bNodes[0], b, a)))
			Expect(tech.Create(ctx, rootPool(b, "there", "1", bNodes...))).To(forbiddenWith(
				fmt.Sprintf(`User "tech-%s" cannot create resource "resourcepools"`, a)))

			Expect(user.Create(ctx, rootPool(a, "users", "1", aNodes...))).To(forbiddenWith(
				fmt.Sprintf(`User "user-%s" cannot create resource "resourcepools"`, a)))
			Expect(user.List(ctx, &planetv1.ResourcePoolList{}, client.InNamespace(a))).To(Succeed())
		})
	})
})

// applyUserRoles creates (once) the ClusterRoles of
// config/rbac/user_roles.yaml.
func applyUserRoles() {
	f, err := os.Open(filepath.Join("..", "..", "config", "rbac", "user_roles.yaml"))
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		role := &rbacv1.ClusterRole{}
		if err := dec.Decode(role); err != nil {
			Expect(err.Error()).To(Equal("EOF"))
			return
		}
		if role.Name == "" {
			continue
		}
		if err := k8s.Create(ctx, role); !apierrors.IsAlreadyExists(err) {
			Expect(err).NotTo(HaveOccurred())
		}
	}
}

// bindRole binds a user to a ClusterRole in a namespace.
func bindRole(namespace, user, role string) {
	Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	})).To(Succeed())
}

// clientAs is a client that impersonates user.
func clientAs(user string) client.Client {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: user}
	cl, err := client.New(c, client.Options{Scheme: scheme.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	return cl
}

package e2e

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/testing/emulator"
	"github.com/planetkube/planetkube/internal/ticket"
	"github.com/planetkube/planetkube/internal/ticketcmd"
)

var _ = Describe("Trust", Ordered, func() {
	var (
		site    string
		root    = ticket.NewSigner("ple", ed25519.NewKeyFromSeed([]byte(strings.Repeat("r", ed25519.SeedSize))))
		child   = ticket.NewSigner("ple.fr", ed25519.NewKeyFromSeed([]byte(strings.Repeat("c", ed25519.SeedSize))))
		pi, usr = "trust-pi", "trust-user"
	)

	BeforeAll(func() {
		site = cluster.Sites[len(cluster.Sites)-1]
		s := &planetv1.Site{}
		var was *planetv1.SiteSpec
		// The Site controller writes the site's status: retry on conflicts.
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := k8s.Get(ctx, client.ObjectKey{Name: site}, s); err != nil {
				return err
			}
			was = s.Spec.DeepCopy()
			s.Spec.PIs = []planetv1.Subject{{Name: pi}}
			s.Spec.Users = []planetv1.Subject{{Name: usr}}
			s.Spec.TrustedAuthorities = []string{"plc", "ple"}
			return k8s.Update(ctx, s)
		})).To(Succeed())
		DeferCleanup(func() {
			Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
				if err := k8s.Get(ctx, client.ObjectKey{Name: site}, s); err != nil {
					return err
				}
				s.Spec = *was
				return k8s.Update(ctx, s)
			})).To(Succeed())
		})
		// This install knows the root only.
		Expect(k8s.Create(ctx, &planetv1.Authority{
			ObjectMeta: metav1.ObjectMeta{Name: root.Authority},
			Spec: planetv1.AuthoritySpec{Keys: []planetv1.AuthorityKey{{
				ID: root.KeyID, PublicKey: ticket.EncodePublicKey(root.Key.Public().(ed25519.PublicKey)),
			}}},
		})).To(Succeed())
	})

	It("makes the install's authority at first start; only the manager reads its key", func() {
		Eventually(func(g Gomega) {
			a := &planetv1.Authority{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "plc"}, a)).To(Succeed())
			g.Expect(a.Spec.Keys).To(HaveLen(1))
		}).Should(Succeed())
		key := client.ObjectKey{Namespace: "planetkube-system", Name: "planetkube-authority-key"}
		Expect(asUser(emulator.ManagerUser).Get(ctx, key, &corev1.Secret{})).To(Succeed())
		for _, who := range []string{pi, usr, "someone"} {
			err := asUser(who).Get(ctx, key, &corev1.Secret{})
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%s read the authority key: %v", who, err)
		}
	})

	It("signs with the install's key through the kubeconfig (ticket issue --key-secret), never printing it, and inspect --from-cluster verifies", func() {
		spec := filepath.Join(GinkgoT().TempDir(), "grant.yaml")
		Expect(os.WriteFile(spec, []byte("audience: ple\nexpiresIn: 24h\nsliver:\n  slice: plc."+site+".fromsecret\n  template: {image: registry.k8s.io/pause:3.10}\n"), 0o600)).To(Succeed())
		run := func(args ...string) (string, error) {
			var out, errs strings.Builder
			err := ticketcmd.Ticket(args, ticketcmd.IO{In: strings.NewReader(""), Out: &out, Err: &errs, Now: time.Now})
			Expect(out.String() + errs.String()).NotTo(ContainSubstring("PRIVATE KEY"))
			return out.String(), err
		}
		token, err := run("issue", "-f", spec, "--key-secret", "planetkube-system/planetkube-authority-key", "--kubeconfig", cluster.Kubeconfig)
		Expect(err).NotTo(HaveOccurred())
		token = strings.TrimSpace(token)
		claims, kid, err := ticket.Inspect(token)
		Expect(err).NotTo(HaveOccurred())
		Expect(claims.Issuer).To(Equal("plc"), "--authority defaults to the name the Secret records")
		plc := &planetv1.Authority{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "plc"}, plc)).To(Succeed())
		Expect(plc.Spec.Keys).To(ContainElement(HaveField("ID", kid)), "signed with a key the install does not publish")
		out, err := run("inspect", "--from-cluster", "--kubeconfig", cluster.Kubeconfig, token)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("verified: yes"))
		// Without the cluster's Authorities a forged copy is refused.
		forged := token[:strings.LastIndexByte(token, '.')+1] + strings.Repeat("A", 86)
		out, err = run("inspect", "--from-cluster", "--kubeconfig", cluster.Kubeconfig, forged)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("reason: BadSignature"))
	})

	It("accepts a delegate's ticket knowing only the root, and runs it only on the sites that trust the issuer", func() {
		now := time.Now().Add(-time.Minute)
		deleg, err := root.Delegate(child.Authority, child.Key.Public().(ed25519.PublicKey), now, now.Add(30*24*time.Hour))
		Expect(err).NotTo(HaveOccurred())
		full := "ple.fr.lip6.measure"
		token, err := child.Issue(ticket.Claims{
			Audience: "plc", ID: "e2e-1", IssuedAt: now.Unix(), Expiry: now.Add(24 * time.Hour).Unix(), Chain: []string{deleg},
			Sliver: &ticket.SliverGrant{Slice: full, Description: "measurements", Template: planetv1.SliverTemplate{Image: "registry.k8s.io/pause:3.10"}},
		})
		Expect(err).NotTo(HaveOccurred())
		tk := &planetv1.Ticket{ObjectMeta: metav1.ObjectMeta{Namespace: site, Name: "lip6-measure"}, Spec: planetv1.TicketSpec{Token: token}}

		By("a site user may not redeem tickets; the site's PI may")
		Expect(apierrors.IsForbidden(asUser(usr).Create(ctx, tk.DeepCopy()))).To(BeTrue())
		Eventually(func() error { return asUser(pi).Create(ctx, tk.DeepCopy()) }).Should(Succeed())

		Eventually(func(g Gomega) {
			got := &planetv1.Ticket{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tk), got)).To(Succeed())
			c := meta.FindStatusCondition(got.Status.Conditions, planetv1.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(planetv1.ReasonRedeemed), c.Message)
		}).Should(Succeed())

		By("slivers Running on the trusting site's nodes, none elsewhere")
		ns := naming.ForeignSliceNamespace("ple.fr", "lip6", "measure")
		Eventually(func(g Gomega) sets.Set[string] {
			pods := &corev1.PodList{}
			g.Expect(k8s.List(ctx, pods, client.InNamespace(ns))).To(Succeed())
			running := sets.New[string]()
			for _, p := range pods.Items {
				g.Expect(nodesOf(site).Has(p.Spec.NodeName)).To(BeTrue(), "a sliver on %s, whose site does not trust ple", p.Spec.NodeName)
				if p.DeletionTimestamp.IsZero() && p.Status.Phase == corev1.PodRunning {
					running.Insert(p.Spec.NodeName)
				}
			}
			return running
		}, 2*time.Minute).Should(Equal(nodesOf(site)))

		s := &planetv1.Slice{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: naming.AuthorityNamespace("ple.fr"), Name: "lip6-measure"}, s)).To(Succeed())
		Expect(s.Status.FullName).To(Equal(full))
	})

	It("lets a broker ServiceAccount bound to planetkube-ticket-broker redeem tickets, and no one else", func() {
		broker := "system:serviceaccount:" + site + ":broker"
		now := time.Now().Add(-time.Minute)
		token, err := root.Issue(ticket.Claims{
			Audience: "plc", ID: "e2e-broker", IssuedAt: now.Unix(), Expiry: now.Add(time.Hour).Unix(),
			Sliver: &ticket.SliverGrant{Slice: "ple.inria.brokered", Template: planetv1.SliverTemplate{Image: "registry.k8s.io/pause:3.10"}},
		})
		Expect(err).NotTo(HaveOccurred())
		tk := &planetv1.Ticket{ObjectMeta: metav1.ObjectMeta{Namespace: site, Name: "brokered"}, Spec: planetv1.TicketSpec{Token: token}}
		Expect(apierrors.IsForbidden(asUser(broker).Create(ctx, tk.DeepCopy()))).To(BeTrue(), "an unbound ServiceAccount created a Ticket")

		Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: site, Name: "ticket-broker"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "planetkube-ticket-broker"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "broker", Namespace: site}},
		})).To(Succeed())
		Eventually(func() error { return asUser(broker).Create(ctx, tk.DeepCopy()) }).Should(Succeed())
		Expect(apierrors.IsForbidden(asUser(broker).Create(ctx, &planetv1.Ticket{
			ObjectMeta: metav1.ObjectMeta{Namespace: cluster.Sites[0], Name: "elsewhere"}, Spec: planetv1.TicketSpec{Token: token},
		}))).To(BeTrue(), "the broker created a Ticket outside the namespace it is bound in")
	})
})

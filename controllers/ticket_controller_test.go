package controllers_test

import (
	"crypto/ed25519"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/ticket"
)

// testKey is a deterministic Ed25519 key.
func testKey(seed string) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed([]byte(strings.Repeat(seed, ed25519.SeedSize)[:ed25519.SeedSize]))
}

// makeAuthority creates an Authority publishing the signer's key.
func makeAuthority(s ticket.Signer) {
	GinkgoHelper()
	a := &planetv1.Authority{
		ObjectMeta: metav1.ObjectMeta{Name: s.Authority},
		Spec: planetv1.AuthoritySpec{Keys: []planetv1.AuthorityKey{{
			ID: s.KeyID, PublicKey: ticket.EncodePublicKey(s.Key.Public().(ed25519.PublicKey)),
		}}},
	}
	Expect(k8s.Create(ctx, a)).To(Succeed())
}

// signUnchecked signs claims as s would, without Issue's own checks: a
// hand-made token, as a careless or hostile issuer could send.
func signUnchecked(s ticket.Signer, c ticket.Claims) string {
	GinkgoHelper()
	c.Issuer = s.Authority
	body, err := json.Marshal(c)
	Expect(err).NotTo(HaveOccurred())
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: s.Key},
		(&jose.SignerOptions{}).WithType(ticket.TypeTicket).WithHeader("kid", s.KeyID))
	Expect(err).NotTo(HaveOccurred())
	obj, err := signer.Sign(body)
	Expect(err).NotTo(HaveOccurred())
	tok, err := obj.CompactSerialize()
	Expect(err).NotTo(HaveOccurred())
	return tok
}

// issueTicket signs claims with s, with Issue's checks.
func issueTicket(s ticket.Signer, c ticket.Claims) string {
	GinkgoHelper()
	tok, err := s.Issue(c)
	Expect(err).NotTo(HaveOccurred())
	return tok
}

// sliverGrant returns the claims of a sliver grant of slice (a full name) to plc.
func sliverGrant(jti, slice string, iat time.Time, mutate func(*ticket.Claims)) ticket.Claims {
	c := ticket.Claims{
		Audience: "plc", ID: jti, IssuedAt: iat.Unix(), Expiry: iat.Add(7 * 24 * time.Hour).Unix(),
		Sliver: &ticket.SliverGrant{
			Slice: slice, Description: "a foreign slice",
			Template: planetv1.SliverTemplate{Image: "registry.k8s.io/pause:3.10"},
		},
	}
	if mutate != nil {
		mutate(&c)
	}
	return c
}

// applyTicket creates a Ticket holding token in namespace ns.
func applyTicket(ns, name, token string) *planetv1.Ticket {
	GinkgoHelper()
	tk := &planetv1.Ticket{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: planetv1.TicketSpec{Token: token}}
	Expect(k8s.Create(ctx, tk)).To(Succeed())
	return tk
}

// ticketReady returns the Ticket's Ready condition, read afresh.
func ticketReady(tk *planetv1.Ticket) func(Gomega) *metav1.Condition {
	return func(g Gomega) *metav1.Condition {
		got := &planetv1.Ticket{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tk), got)).To(Succeed())
		c := meta.FindStatusCondition(got.Status.Conditions, planetv1.ConditionReady)
		g.Expect(c).NotTo(BeNil(), "no Ready condition yet")
		g.Expect(c.ObservedGeneration).To(Equal(got.Generation))
		return c
	}
}

// sliverNodesIn returns the node of every live pod of a namespace, by pod name.
func sliverNodesIn(ns string) func(Gomega) map[string]string {
	return func(g Gomega) map[string]string {
		pods := &corev1.PodList{}
		g.Expect(k8s.List(ctx, pods, client.InNamespace(ns))).To(Succeed())
		out := map[string]string{}
		for _, p := range pods.Items {
			if p.DeletionTimestamp.IsZero() {
				out[p.Name] = p.Spec.NodeName
			}
		}
		return out
	}
}

// foreignSlice returns the Slice a ticket for full name makes, read afresh.
func foreignSlice(g Gomega, full string) *planetv1.Slice {
	a, site, slice, ok := naming.ParseFullName(full)
	g.Expect(ok).To(BeTrue())
	s := &planetv1.Slice{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: naming.AuthorityNamespace(a), Name: naming.ForeignSliceName(site, slice)}, s)).To(Succeed())
	return s
}

// noForeignSlice asserts that no Slice was made for full name.
func noForeignSlice(full string) {
	GinkgoHelper()
	a, site, slice, _ := naming.ParseFullName(full)
	err := k8s.Get(ctx, client.ObjectKey{Namespace: naming.AuthorityNamespace(a), Name: naming.ForeignSliceName(site, slice)}, &planetv1.Slice{})
	Expect(apierrors.IsNotFound(err)).To(BeTrue(), "a Slice exists for %s: %v", full, err)
}

var _ = Describe("Ticket controller", Ordered, func() {
	var (
		ple     = ticket.NewSigner("ple", testKey("e"))
		pleFr   = ticket.NewSigner("ple.fr", testKey("f"))
		plj     = ticket.NewSigner("plj", testKey("j"))
		strange = testKey("x")
		now     = time.Now().Add(-time.Minute).Truncate(time.Second)
		chain   []string
	)
	issue := issueTicket

	BeforeAll(func() {
		makeAuthority(ple)
		makeAuthority(plj) // known, but no site trusts it
		d, err := ple.Delegate(pleFr.Authority, pleFr.Key.Public().(ed25519.PublicKey), now.Add(-time.Hour), now.Add(30*24*time.Hour))
		Expect(err).NotTo(HaveOccurred())
		chain = []string{d}
		makeSite("tka", func(s *planetv1.SiteSpec) { s.TrustedAuthorities = []string{"plc", "ple"} })
		makeSite("tkb", nil) // trusts the local authority only
		makeSite("tkc", nil)
		makeNode("tka-1", "tka", nil)
		makeNode("tkb-1", "tkb", nil)
		makeNode("tkc-1", "tkc", nil)
	})

	It("redeems a sliver ticket into a foreign slice whose slivers run only on sites that trust the issuer", func() {
		full := "ple.inria.codeen"
		mark := writes.count()
		tk := applyTicket("tka", "codeen", issue(ple, sliverGrant("t-1", full, now, func(c *ticket.Claims) {
			c.Sliver.Nodes.Sites = []string{"tka", "tkb"}
		})))
		Eventually(ticketReady(tk)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		ns := naming.ForeignSliceNamespace("ple", "inria", "codeen")
		Eventually(sliverNodesIn(ns)).Should(Equal(sliversOn("inria-codeen", "tka-1")))
		// The Slice is made with the Slice controller's finalizer: no
		// write of its own adds it.
		Expect(writes.since(mark, "patch Slice "+naming.AuthorityNamespace("ple")+"/inria-codeen")).To(BeEmpty())

		got := &planetv1.Ticket{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tk), got)).To(Succeed())
		Expect(got.Status.Issuer).To(Equal("ple"))
		Expect(got.Status.Audience).To(Equal("plc"))
		Expect(got.Status.Grant).To(Equal(planetv1.TicketGrantSliver))
		Expect(got.Status.Slice).To(Equal(full))
		Expect(got.Status.Redeemed).To(Equal("Slice/" + naming.AuthorityNamespace("ple") + "/inria-codeen"))
		Expect(got.Status.ExpiresAt.Unix()).To(Equal(now.Add(7 * 24 * time.Hour).Unix()))

		Eventually(func(g Gomega) {
			s := foreignSlice(g, full)
			g.Expect(s.Status.FullName).To(Equal(full))
			g.Expect(s.Status.Namespace).To(Equal(ns))
			g.Expect(s.Spec.ExpiresAt.Unix()).To(Equal(now.Add(7 * 24 * time.Hour).Unix()))
		}).Should(Succeed())
	})

	It("renews a slice with a newer ticket, and an older one changes nothing", func() {
		full := "ple.inria.codeen"
		later := now.Add(30 * time.Second)
		tk := applyTicket("tka", "codeen-renewal", issue(ple, sliverGrant("t-2", full, later, func(c *ticket.Claims) {
			c.Expiry = later.Add(14 * 24 * time.Hour).Unix()
			c.Sliver.Nodes.Sites = []string{"tka", "tkb"}
		})))
		Eventually(ticketReady(tk)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		Eventually(func(g Gomega) int64 { return foreignSlice(g, full).Spec.ExpiresAt.Unix() }).Should(Equal(later.Add(14 * 24 * time.Hour).Unix()))

		// The first token again, in a new Ticket: the same jti and token
		// (not a replay), but older than the ticket in force.
		first := &planetv1.Ticket{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "tka", Name: "codeen"}, first)).To(Succeed())
		again := applyTicket("tka", "codeen-again", first.Spec.Token)
		Eventually(ticketReady(again)).Should(withReason(metav1.ConditionFalse, planetv1.ReasonSuperseded))
		Consistently(func(g Gomega) int64 { return foreignSlice(g, full).Spec.ExpiresAt.Unix() }, "2s").Should(Equal(later.Add(14 * 24 * time.Hour).Unix()))
	})

	It("refuses a second grant under a redeemed jti, after the Ticket is deleted and after a manager restart", func() {
		replay := issue(ple, sliverGrant("t-1", "ple.inria.other", now, nil))
		tk := applyTicket("tka", "replay", replay)
		Eventually(ticketReady(tk)).Should(withReason(metav1.ConditionFalse, string(ticket.Replayed)))
		noForeignSlice("ple.inria.other")

		Expect(k8s.Delete(ctx, &planetv1.Ticket{ObjectMeta: metav1.ObjectMeta{Namespace: "tka", Name: "codeen"}})).To(Succeed())
		Expect(k8s.Delete(ctx, tk)).To(Succeed())
		stopManager()
		startManager()
		tk = applyTicket("tka", "replay-after-restart", replay)
		Eventually(ticketReady(tk)).Should(withReason(metav1.ConditionFalse, string(ticket.Replayed)))
		noForeignSlice("ple.inria.other")
	})

	It("accepts a delegate's ticket through its chain from a known root", func() {
		full := "ple.fr.lip6.measure"
		tk := applyTicket("tka", "delegated", issue(pleFr, sliverGrant("d-1", full, now, func(c *ticket.Claims) {
			c.Chain = chain
			c.Expiry = now.Add(24 * time.Hour).Unix()
			c.Sliver.Nodes.Sites = []string{"tka", "tkb"}
		})))
		Eventually(ticketReady(tk)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		Eventually(sliverNodesIn(naming.ForeignSliceNamespace("ple.fr", "lip6", "measure"))).Should(Equal(sliversOn("lip6-measure", "tka-1")))
	})

	It("redeems a pool grant into a bound part of the site's pool, and refuses one that does not fit or whose site does not trust the issuer", func() {
		Expect(k8s.Create(ctx, newPool("tka", "tka-root", "", rl("cpu", "2"), "tka-1"))).To(Succeed())
		Expect(k8s.Create(ctx, newPool("tkb", "tkb-root", "", rl("cpu", "2"), "tkb-1"))).To(Succeed())
		Eventually(poolCondition("tka", "tka-root", planetv1.ConditionReady)).Should(HaveField("Status", metav1.ConditionTrue))
		Eventually(poolCondition("tkb", "tkb-root", planetv1.ConditionReady)).Should(HaveField("Status", metav1.ConditionTrue))
		poolGrant := func(jti, pool, cpu string) string {
			c := sliverGrant(jti, "ple.inria.codeen", now, nil)
			c.Sliver, c.Pool = nil, &ticket.PoolGrant{Pool: pool, PerNode: rl("cpu", cpu), Slice: "ple.inria.codeen"}
			return issue(ple, c)
		}

		tk := applyTicket("tka", "pool", poolGrant("p-1", "tka/tka-root", "1"))
		Eventually(ticketReady(tk)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		got := &planetv1.Ticket{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tk), got)).To(Succeed())
		Expect(got.Status.Grant).To(Equal(planetv1.TicketGrantPool))
		part := strings.TrimPrefix(got.Status.Redeemed, "ResourcePool/tka/")
		Eventually(poolCondition("tka", part, planetv1.ConditionBound)).Should(HaveField("Status", metav1.ConditionTrue))
		By("the foreign slice's sliver on the pool's node gets the bound cpu")
		Eventually(func(g Gomega) {
			pods := &corev1.PodList{}
			g.Expect(k8s.List(ctx, pods, client.InNamespace(naming.ForeignSliceNamespace("ple", "inria", "codeen")))).To(Succeed())
			var bound []string
			for _, p := range pods.Items {
				if p.DeletionTimestamp.IsZero() && p.Spec.NodeName == "tka-1" {
					bound = append(bound, p.Spec.Containers[0].Resources.Limits.Cpu().String())
				}
			}
			// Make-before-break: the fair-share sliver stays until the bound
			// one is Ready, which no kubelet makes it here.
			g.Expect(bound).To(ContainElement("1"))
		}).Should(Succeed())

		over := applyTicket("tka", "pool-over", poolGrant("p-2", "tka/tka-root", "2"))
		Eventually(ticketReady(over)).Should(withReason(metav1.ConditionFalse, string(ticket.Overcommitted)))
		untrusted := applyTicket("tkb", "pool-untrusted", poolGrant("p-3", "tkb/tkb-root", "1"))
		Eventually(ticketReady(untrusted)).Should(withReason(metav1.ConditionFalse, string(ticket.NotTrusted)))
		var made []string // the pool parts tickets made at this test's sites (other tests make theirs)
		for _, site := range []string{"tka", "tkb"} {
			pools := &planetv1.ResourcePoolList{}
			Expect(k8s.List(ctx, pools, client.InNamespace(site), client.HasLabels{planetv1.LabelAuthority})).To(Succeed())
			for _, p := range pools.Items {
				made = append(made, p.Namespace+"/"+p.Name)
			}
		}
		Expect(made).To(HaveLen(1), "a refused pool grant made a pool")
		// A refusal that depends on the cluster (trust, room) is checked
		// again when that changes: these would be redeemed once tkb trusts
		// ple below.
		Expect(k8s.Delete(ctx, over)).To(Succeed())
		Expect(k8s.Delete(ctx, untrusted)).To(Succeed())
	})

	DescribeTable("refuses a ticket with the failed check's reason and creates nothing",
		func(reason ticket.Reason, full string, token func() string) {
			name := "refused-" + strings.ToLower(string(reason))
			tk := applyTicket("tkb", name, token())
			Eventually(ticketReady(tk)).Should(withReason(metav1.ConditionFalse, string(reason)))
			Consistently(func() bool {
				a, site, slice, _ := naming.ParseFullName(full)
				err := k8s.Get(ctx, client.ObjectKey{Namespace: naming.AuthorityNamespace(a), Name: naming.ForeignSliceName(site, slice)}, &planetv1.Slice{})
				return apierrors.IsNotFound(err)
			}, "1s").Should(BeTrue())
		},
		Entry("malformed", ticket.Malformed, "ple.x.malformed", func() string { return "aaaaaaaaaaa.bbbbbbbbbbbbb.ccccccccccc" }),
		Entry("bad signature", ticket.BadSignature, "ple.x.forged", func() string {
			return issue(ticket.Signer{Authority: "ple", KeyID: ple.KeyID, Key: strange}, sliverGrant("f-1", "ple.x.forged", now, nil))
		}),
		Entry("unknown issuer", ticket.UnknownIssuer, "plx.x.unknown", func() string {
			return issue(ticket.NewSigner("plx", strange), sliverGrant("u-1", "plx.x.unknown", now, nil))
		}),
		Entry("bad delegation", ticket.BadDelegation, "ple.fr.x.baddeleg", func() string {
			return issue(ticket.NewSigner("ple.fr", strange), sliverGrant("b-1", "ple.fr.x.baddeleg", now, func(c *ticket.Claims) {
				c.Chain = chain
				c.Expiry = now.Add(24 * time.Hour).Unix()
			}))
		}),
		Entry("a grant outside the issuer's name (hand-signed: Issue refuses to make it)", ticket.OutOfScope, "plj.x.outofscope", func() string {
			return signUnchecked(ple, sliverGrant("o-1", "plj.x.outofscope", now, nil))
		}),
		Entry("wrong audience", ticket.WrongAudience, "ple.x.wrongaud", func() string {
			return issue(ple, sliverGrant("w-1", "ple.x.wrongaud", now, func(c *ticket.Claims) { c.Audience = "plk" }))
		}),
		Entry("not yet valid", ticket.NotYetValid, "ple.x.early", func() string {
			return issue(ple, sliverGrant("n-1", "ple.x.early", now, func(c *ticket.Claims) { c.NotBefore = now.Add(time.Hour).Unix() }))
		}),
		Entry("expired", ticket.Expired, "ple.x.late", func() string {
			return issue(ple, sliverGrant("e-1", "ple.x.late", now.Add(-48*time.Hour), func(c *ticket.Claims) {
				c.Expiry = now.Add(-24 * time.Hour).Unix()
			}))
		}),
		Entry("issuer no site trusts", ticket.NotTrusted, "plj.x.untrusted", func() string {
			return issue(plj, sliverGrant("nt-1", "plj.x.untrusted", now, nil))
		}),
		Entry("a grant the API server refuses", ticket.InvalidGrant, "ple.x.badkeys", func() string {
			return issue(ple, sliverGrant("i-1", "ple.x.badkeys", now, func(c *ticket.Claims) {
				c.Sliver.Users = []planetv1.SliceUser{{Name: "eve", SSHKeys: []string{"not a key"}}}
			}))
		}),
	)

	It("adds and removes slivers as sites change whom they trust, local slices included", func() {
		ns := naming.ForeignSliceNamespace("ple", "inria", "codeen")
		Expect(updateSpec(client.ObjectKey{Name: "tkb"}, &planetv1.Site{}, func() {})).To(Succeed())
		site := &planetv1.Site{}
		Expect(updateSpec(client.ObjectKey{Name: "tkb"}, site, func() { site.Spec.TrustedAuthorities = []string{"plc", "ple"} })).To(Succeed())
		// (tka-1 may hold two slivers: the pool-bound one and the fair-share
		// one it replaces once Ready, make-before-break.)
		nodes := func(g Gomega) []string {
			set := map[string]bool{}
			for _, n := range sliverNodesIn(ns)(g) {
				set[n] = true
			}
			return slices.Sorted(maps.Keys(set))
		}
		Eventually(nodes).Should(Equal([]string{"tka-1", "tkb-1"}))

		Expect(updateSpec(client.ObjectKey{Name: "tka"}, site, func() { site.Spec.TrustedAuthorities = []string{"plc"} })).To(Succeed())
		Eventually(nodes).Should(Equal([]string{"tkb-1"}))

		// A local slice over two sites; one of them stops trusting the
		// local authority.
		local := newSlice("tkc", "web", func(s *planetv1.SliceSpec) { s.Nodes.Sites = []string{"tkb", "tkc"} })
		Expect(k8s.Create(ctx, local)).To(Succeed())
		Eventually(sliverNodes(local)).Should(Equal(sliversOn("web", "tkb-1", "tkc-1")))
		Expect(updateSpec(client.ObjectKey{Name: "tkb"}, site, func() { site.Spec.TrustedAuthorities = []string{"ple"} })).To(Succeed())
		Eventually(sliverNodes(local)).Should(Equal(sliversOn("web", "tkc-1")))
	})

	It("keeps a foreign slice while a Ticket carrying its ticket lives, and deletes it with the last", func() {
		full := "ple.inria.soft"
		token := issue(ple, sliverGrant("soft-1", full, now, nil))
		pushed := applyTicket("tkb", "soft-pushed", token)
		Eventually(ticketReady(pushed)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		pulled := applyTicket("tkc", "soft-pulled", token) // the same token, pulled: idempotent
		Eventually(ticketReady(pulled)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		older := applyTicket("tkc", "soft-older", issue(ple, sliverGrant("soft-0", full, now.Add(-time.Minute), nil)))
		Eventually(ticketReady(older)).Should(withReason(metav1.ConditionFalse, planetv1.ReasonSuperseded))
		Eventually(func(g Gomega) string { return foreignSlice(g, full).Annotations[planetv1.AnnotationGrantedBy] }).Should(Equal("tkb/soft-pushed"))

		Expect(k8s.Delete(ctx, pushed)).To(Succeed())
		Eventually(func(g Gomega) string { return foreignSlice(g, full).Annotations[planetv1.AnnotationGrantedBy] }).Should(Equal("tkc/soft-pulled"),
			"the slice passes to the other Ticket with its jti")
		Expect(k8s.Delete(ctx, pulled)).To(Succeed())
		Eventually(func() bool {
			s := &planetv1.Slice{}
			err := k8s.Get(ctx, client.ObjectKey{Namespace: naming.AuthorityNamespace("ple"), Name: naming.ForeignSliceName("inria", "soft")}, s)
			return apierrors.IsNotFound(err) || !s.DeletionTimestamp.IsZero()
		}).Should(BeTrue(), "an older, superseded ticket does not keep the slice")
		Expect(k8s.Delete(ctx, older)).To(Succeed())
	})

	It("counts an authority's slices, and removes them all when the Authority is deleted", func() {
		Eventually(func(g Gomega) {
			a := &planetv1.Authority{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "ple"}, a)).To(Succeed())
			g.Expect(a.Status.ValidKeys).To(BeEquivalentTo(1))
			g.Expect(a.Status.Slices).To(BeEquivalentTo(2)) // ple.inria.codeen and the delegate's ple.fr.lip6.measure
			g.Expect(meta.IsStatusConditionTrue(a.Status.Conditions, planetv1.ConditionReady)).To(BeTrue())
		}).Should(Succeed())
		Expect(k8s.Delete(ctx, &planetv1.Authority{ObjectMeta: metav1.ObjectMeta{Name: "ple"}})).To(Succeed())
		// envtest runs no namespace controller: the namespaces stay
		// Terminating, and the Authority waits for them.
		for _, name := range []string{naming.AuthorityNamespace("ple"), naming.AuthorityNamespace("ple.fr")} {
			Eventually(func(g Gomega) {
				ns := &corev1.Namespace{}
				g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, ns)).To(Succeed())
				g.Expect(ns.DeletionTimestamp.IsZero()).To(BeFalse(), "namespace %s is not being deleted", name)
			}).Should(Succeed())
		}
		Consistently(func() error { return k8s.Get(ctx, client.ObjectKey{Name: "ple"}, &planetv1.Authority{}) }, "1s").Should(Succeed())
		Expect(k8s.Get(ctx, client.ObjectKey{Name: naming.AuthorityNamespace("plj")}, &corev1.Namespace{})).To(Satisfy(apierrors.IsNotFound))
	})
})

var _ = Describe("The install's authority", func() {
	It("has a key made at first start, immutable, and its Authority publishes the public half", func() {
		secret := &corev1.Secret{}
		Eventually(func() error {
			return k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: authorityKeySecret}, secret)
		}).Should(Succeed())
		Expect(secret.Immutable).To(HaveValue(BeTrue()))
		Expect(string(secret.Data["authority"])).To(Equal("plc"))
		priv, err := ticket.DecodePrivateKey(secret.Data["ed25519.pem"])
		Expect(err).NotTo(HaveOccurred())

		a := &planetv1.Authority{}
		Eventually(func() error { return k8s.Get(ctx, client.ObjectKey{Name: "plc"}, a) }).Should(Succeed())
		signer := ticket.NewSigner("plc", priv)
		Expect(a.Spec.Keys).To(ContainElement(planetv1.AuthorityKey{
			ID: signer.KeyID, PublicKey: ticket.EncodePublicKey(priv.Public().(ed25519.PublicKey)),
		}))

		// A restarted manager keeps the key.
		stopManager()
		startManager()
		Consistently(func(g Gomega) []planetv1.AuthorityKey {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "plc"}, a)).To(Succeed())
			return a.Spec.Keys
		}, "2s").Should(HaveLen(1))
	})
})

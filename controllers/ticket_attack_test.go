package controllers_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/controllers"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/ticket"
)

// eventReasons returns the reasons of the events about an object (kind,
// name) in a namespace ("default" for cluster-scoped objects).
func eventReasons(namespace, kind, name string) func(Gomega) []string {
	return func(g Gomega) []string {
		list := &eventsv1.EventList{}
		g.Expect(k8s.List(ctx, list, client.InNamespace(namespace))).To(Succeed())
		var out []string
		for _, e := range list.Items {
			if e.Regarding.Kind == kind && e.Regarding.Name == name {
				out = append(out, e.Reason)
			}
		}
		return out
	}
}

// sliceGone succeeds when the foreign Slice of full is gone or going.
func sliceGone(full string) func() bool {
	return func() bool {
		a, site, slice, _ := naming.ParseFullName(full)
		s := &planetv1.Slice{}
		err := k8s.Get(ctx, client.ObjectKey{Namespace: naming.AuthorityNamespace(a), Name: naming.ForeignSliceName(site, slice)}, s)
		return apierrors.IsNotFound(err) || !s.DeletionTimestamp.IsZero()
	}
}

// The ten defects an attack on tickets, delegation and federation found
// (issue 22), each reproduced at the receiving install against a real API
// server: a hostile or careless issuer signs what it likes, and anyone who
// holds a copy of a token applies it where they can.
var _ = Describe("Tickets under attack", Ordered, func() {
	var (
		pla   = ticket.NewSigner("pla", testKey("q"))
		plaKr = ticket.NewSigner("pla.kr", testKey("k"))
		spare = testKey("s")
		now   = time.Now().Add(-time.Minute).Truncate(time.Second)
		chain []string
	)
	issue := issueTicket
	// grant is a sliver grant of slice to plc on site ata's node.
	grant := func(jti, slice string, iat time.Time, mutate func(*ticket.Claims)) ticket.Claims {
		return sliverGrant(jti, slice, iat, func(c *ticket.Claims) {
			c.Sliver.Nodes.Sites = []string{"ata"}
			if mutate != nil {
				mutate(c)
			}
		})
	}
	withdrawal := func(jti, slice string, iat time.Time) ticket.Claims {
		return ticket.Claims{Audience: "plc", ID: jti, IssuedAt: iat.Unix(), Expiry: iat.Unix() + ticket.MaxLifetimeSeconds,
			Withdraw: &ticket.WithdrawGrant{Slice: slice}}
	}
	poolGrant := func(jti, pool, slice string) ticket.Claims {
		c := sliverGrant(jti, slice, now, nil)
		c.Sliver, c.Pool = nil, &ticket.PoolGrant{Pool: pool, PerNode: rl("cpu", "500m"), Slice: slice}
		return c
	}

	BeforeAll(func() {
		makeAuthority(pla)
		d, err := pla.Delegate(plaKr.Authority, plaKr.Key.Public().(ed25519.PublicKey), now.Add(-time.Hour), now.Add(30*24*time.Hour))
		Expect(err).NotTo(HaveOccurred())
		chain = []string{d}
		makeSite("ata", func(s *planetv1.SiteSpec) { s.TrustedAuthorities = []string{"plc", "pla"} })
		makeSite("atb", func(s *planetv1.SiteSpec) { s.TrustedAuthorities = []string{"plc", "pla"} })
		makeNode("ata-1", "ata", nil)
		makeNode("atb-1", "atb", nil)
		Expect(k8s.Create(ctx, newPool("atb", "atb-root", "", rl("cpu", "2"), "atb-1"))).To(Succeed())
		Eventually(poolCondition("atb", "atb-root", planetv1.ConditionReady)).Should(HaveField("Status", metav1.ConditionTrue))
	})

	It("grants a jti once per issuer, whatever slices (and authorities' namespaces) its tickets name", func() {
		first := applyTicket("ata", "jti-a", issue(pla, grant("same-jti", "pla.inria.a", now, nil)))
		Eventually(ticketReady(first)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		// Another slice, under a delegate's name: another namespace.
		second := applyTicket("ata", "jti-b", issue(pla, grant("same-jti", "pla.kr.seoul.b", now, nil)))
		Eventually(ticketReady(second)).Should(withReason(metav1.ConditionFalse, string(ticket.Replayed)))
		noForeignSlice("pla.kr.seoul.b")
		By("the records are in the manager's namespace, not the authority's")
		records := &corev1.ConfigMapList{}
		Expect(k8s.List(ctx, records, client.InNamespace(managerNamespace), client.MatchingLabels{planetv1.LabelTicketRecord: "jti"})).To(Succeed())
		Expect(records.Items).NotTo(BeEmpty())
		Expect(k8s.List(ctx, records, client.InNamespace(naming.AuthorityNamespace("pla")), client.HasLabels{planetv1.LabelTicketRecord})).To(Succeed())
		Expect(records.Items).To(BeEmpty())
	})

	It("makes nothing for a refused ticket: not even its authority's namespace", func() {
		tk := applyTicket("ata", "refused-grant", issue(pla, grant("refused-1", "pla.kr.seoul.refused", now, func(c *ticket.Claims) {
			c.Sliver.Users = []planetv1.SliceUser{{Name: "eve", SSHKeys: []string{"not a key"}}}
		})))
		Eventually(ticketReady(tk)).Should(withReason(metav1.ConditionFalse, string(ticket.InvalidGrant)))
		Consistently(func() error {
			return k8s.Get(ctx, client.ObjectKey{Name: naming.AuthorityNamespace("pla.kr")}, &corev1.Namespace{})
		}, "2s").Should(Satisfy(apierrors.IsNotFound), "a refused ticket made its authority's namespace")
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: recordNameOf("pla", "refused-1")}, &corev1.ConfigMap{})).
			To(Satisfy(apierrors.IsNotFound), "a refused ticket burnt its jti")
	})

	It("refuses once, with NamespaceConflict, a ticket whose authority's namespace is another's", func() {
		taken := naming.AuthorityNamespace("pla.zz")
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: taken}})).To(Succeed())
		tk := applyTicket("ata", "conflict", issue(pla, grant("conflict-1", "pla.zz.seoul.x", now, nil)))
		Eventually(ticketReady(tk)).Should(withReason(metav1.ConditionFalse, planetv1.ReasonNamespaceConflict))
		got := &planetv1.Ticket{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tk), got)).To(Succeed())
		Consistently(func(g Gomega) string {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tk), got)).To(Succeed())
			return got.ResourceVersion
		}, "3s").Should(Equal(got.ResourceVersion), "the refusal is not retried in a loop")
		noForeignSlice("pla.zz.seoul.x")
	})

	It("orders two tickets of one iat for one slice the same way at every look, and then writes nothing", func() {
		full := "pla.inria.tie"
		x := issue(pla, grant("tie-x", full, now, func(c *ticket.Claims) { c.Sliver.CPUShare = 2 }))
		y := issue(pla, grant("tie-y", full, now, func(c *ticket.Claims) {
			c.Sliver.CPUShare, c.Sliver.State = 7, planetv1.SliceSuspended
		}))
		winner, loser := "tie-x", "tie-y"
		if ticket.HashOf(y) > ticket.HashOf(x) {
			winner, loser = loser, winner
		}
		tx, ty := applyTicket("ata", "tie-x", x), applyTicket("atb", "tie-y", y)
		byName := map[string]*planetv1.Ticket{"tie-x": tx, "tie-y": ty}
		Eventually(ticketReady(byName[winner])).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		Eventually(ticketReady(byName[loser])).Should(withReason(metav1.ConditionFalse, planetv1.ReasonSuperseded))
		Eventually(func(g Gomega) string { return foreignSlice(g, full).Annotations[planetv1.AnnotationTicketID] }).Should(Equal(winner))

		By("holding both for 30 s: no write about the slice or its tickets after convergence")
		words := []string{"inria-tie", "tie-x", "tie-y"}
		// Converged: the slice's status is current, and 2 s pass without a
		// write about it (the loop this guards against wrote many a second).
		Eventually(func(g Gomega) {
			s := foreignSlice(g, full)
			g.Expect(s.Status.ObservedGeneration).To(Equal(s.Generation))
			n := writes.count()
			g.Consistently(func() []string { return writes.since(n, words...) }, "2s", "200ms").Should(BeEmpty())
		}).Should(Succeed())
		generation := foreignSlice(Default, full).Generation
		n := writes.count()
		Consistently(func(g Gomega) {
			g.Expect(writes.since(n, words...)).To(BeEmpty())
			g.Expect(foreignSlice(g, full).Generation).To(Equal(generation))
		}, "30s", "1s").Should(Succeed())
	})

	It("revokes every copy of a withdrawn slice's tickets, older ones too, across a restart; a newer ticket grants it again", func() {
		full := "pla.inria.w"
		older := issue(pla, grant("w-0", full, now.Add(-time.Minute), nil))
		token := issue(pla, grant("w-1", full, now, nil))
		pushed := applyTicket("ata", "w-pushed", token)
		Eventually(ticketReady(pushed)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		copied := applyTicket("atb", "w-copy", token) // a copy, applied by someone who could read it
		Eventually(ticketReady(copied)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		Eventually(sliverNodesIn(naming.ForeignSliceNamespace("pla", "inria", "w"))).ShouldNot(BeEmpty())

		By("the issuer withdraws the slice: the slice goes, the copies are revoked, the pushed Ticket too")
		w := applyTicket("ata", "w-withdraw", issue(pla, withdrawal("w-2", full, now.Add(10*time.Second))))
		Eventually(ticketReady(w)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonWithdrawn))
		Eventually(sliceGone(full)).Should(BeTrue())
		Eventually(ticketReady(copied)).Should(withReason(metav1.ConditionFalse, string(ticket.Revoked)))
		Eventually(ticketReady(pushed)).Should(withReason(metav1.ConditionFalse, string(ticket.Revoked)))
		Consistently(sliceGone(full), "2s").Should(BeTrue(), "a copy brought the slice back")
		got := &planetv1.Ticket{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(w), got)).To(Succeed())
		Expect(got.Status.Grant).To(Equal(planetv1.TicketGrantWithdraw))

		By("after a restart, and with the withdrawal's Ticket deleted, a copy and an older ticket are refused")
		Expect(k8s.Delete(ctx, w)).To(Succeed())
		stopManager()
		startManager()
		again := applyTicket("atb", "w-copy-again", token)
		Eventually(ticketReady(again)).Should(withReason(metav1.ConditionFalse, string(ticket.Revoked)))
		old := applyTicket("atb", "w-older", older)
		Eventually(ticketReady(old)).Should(withReason(metav1.ConditionFalse, string(ticket.Revoked)))
		Consistently(sliceGone(full), "2s").Should(BeTrue())

		By("a ticket issued after the withdrawal grants the slice again")
		renewed := applyTicket("ata", "w-renewed", issue(pla, grant("w-3", full, now.Add(20*time.Second), nil)))
		Eventually(ticketReady(renewed)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		Eventually(sliceGone(full)).Should(BeFalse())
		for _, t := range []*planetv1.Ticket{pushed, copied, again, old, renewed} {
			Expect(k8s.Delete(ctx, t)).To(Succeed())
		}
		Eventually(sliceGone(full)).Should(BeTrue())
	})

	It("takes a pool's part away with its grant: the Ticket deleted, or the site's trust withdrawn", func() {
		full := "pla.inria.a" // redeemed by the first test
		parts := func(g Gomega) []string {
			list := &planetv1.ResourcePoolList{}
			g.Expect(k8s.List(ctx, list, client.InNamespace("atb"), client.MatchingLabels{planetv1.LabelAuthority: "pla"})).To(Succeed())
			var out []string
			for _, p := range list.Items {
				if p.DeletionTimestamp.IsZero() {
					out = append(out, p.Name)
				}
			}
			return out
		}
		tk := applyTicket("atb", "part-1", issue(pla, poolGrant("part-1", "atb/atb-root", full)))
		Eventually(ticketReady(tk)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		Eventually(parts).Should(HaveLen(1))
		Expect(k8s.Delete(ctx, tk)).To(Succeed())
		Eventually(parts).Should(BeEmpty(), "the part outlived its deleted Ticket")

		tk = applyTicket("atb", "part-2", issue(pla, poolGrant("part-2", "atb/atb-root", full)))
		Eventually(ticketReady(tk)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		Eventually(parts).Should(HaveLen(1))
		site := &planetv1.Site{}
		Expect(updateSpec(client.ObjectKey{Name: "atb"}, site, func() { site.Spec.TrustedAuthorities = []string{"plc"} })).To(Succeed())
		Eventually(ticketReady(tk)).Should(withReason(metav1.ConditionFalse, string(ticket.NotTrusted)))
		Eventually(parts).Should(BeEmpty(), "the part stayed bound after its site stopped trusting the issuer")
		Eventually(eventReasons("atb", "Ticket", "part-2")).Should(ContainElement(string(ticket.NotTrusted)))
		Expect(updateSpec(client.ObjectKey{Name: "atb"}, site, func() { site.Spec.TrustedAuthorities = []string{"plc", "pla"} })).To(Succeed())
		Eventually(ticketReady(tk)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed), "trusted again, it holds again")
		Eventually(parts).Should(HaveLen(1))
	})

	It("lets no site PI move a foreign slice's floor with the annotations of a home slice", func() {
		full := "pla.inria.victim"
		// A Slice of site ata, whose annotations its PI writes at will,
		// pretending to be a foreign slice granted by a Ticket that is gone
		// and run by a ticket issued a year from now.
		fake := newSlice("ata", "fake", nil)
		fake.Annotations = map[string]string{
			planetv1.AnnotationGrantedBy: "ata/none", planetv1.AnnotationSliceFullName: full,
			planetv1.AnnotationTicketIssuedAt: fmt.Sprint(now.Add(365 * 24 * time.Hour).Unix()), planetv1.AnnotationTicketID: "fake",
		}
		fake.Labels = map[string]string{planetv1.LabelAuthority: "pla", planetv1.LabelManagedBy: planetv1.ManagedByValue}
		Expect(k8s.Create(ctx, fake)).To(Succeed())
		Consistently(func() error {
			return k8s.Get(ctx, client.ObjectKeyFromObject(fake), &planetv1.Slice{})
		}, "2s").Should(Succeed(), "the home slice was released as if a ticket made it")
		tk := applyTicket("ata", "victim", issue(pla, grant("victim-1", full, now, nil)))
		Eventually(ticketReady(tk)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: "slice-" + sliceRecordHash(full)}, &corev1.ConfigMap{})).
			To(Satisfy(apierrors.IsNotFound), "a floor was raised for the victim")
		Expect(k8s.Delete(ctx, fake)).To(Succeed())
	})

	It("tells apart two tokens with one jti from a parent and its delegate", func() {
		full := "pla.kr.seoul.shared"
		child := applyTicket("ata", "shared-child", issue(plaKr, grant("shared", full, now, func(c *ticket.Claims) {
			c.Chain, c.Expiry = chain, now.Add(24*time.Hour).Unix()
		})))
		Eventually(ticketReady(child)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		token := issue(pla, grant("shared", full, now.Add(5*time.Second), func(c *ticket.Claims) { c.Sliver.CPUShare = 9 }))
		parent := applyTicket("atb", "shared-parent", token)
		Eventually(ticketReady(parent)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		Eventually(func(g Gomega) {
			s := foreignSlice(g, full)
			g.Expect(s.Annotations[planetv1.AnnotationTicketSHA256]).To(Equal(ticket.HashOf(token)))
			g.Expect(s.Spec.CPUShare).To(BeEquivalentTo(9))
		}).Should(Succeed(), "the parent's ticket was taken for the delegate's, one jti for both")
		Eventually(ticketReady(child)).Should(withReason(metav1.ConditionFalse, planetv1.ReasonSuperseded))
	})

	It("releases what a key's tickets granted when the key is removed, directly and through a delegation", func() {
		direct := applyTicket("ata", "key-direct", issue(pla, grant("key-1", "pla.inria.keyed", now, nil)))
		delegated := applyTicket("ata", "key-delegated", issue(plaKr, grant("key-2", "pla.kr.seoul.keyed", now, func(c *ticket.Claims) {
			c.Chain, c.Expiry = chain, now.Add(24*time.Hour).Unix()
		})))
		Eventually(ticketReady(direct)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		Eventually(ticketReady(delegated)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))

		other := ticket.NewSigner("pla", spare)
		a := &planetv1.Authority{}
		Expect(updateSpec(client.ObjectKey{Name: "pla"}, a, func() {
			a.Spec.Keys = []planetv1.AuthorityKey{{ID: other.KeyID, PublicKey: ticket.EncodePublicKey(spare.Public().(ed25519.PublicKey))}}
		})).To(Succeed())
		Eventually(ticketReady(direct)).Should(withReason(metav1.ConditionFalse, string(ticket.BadSignature)))
		Eventually(ticketReady(delegated)).Should(withReason(metav1.ConditionFalse, string(ticket.BadDelegation)))
		for _, full := range []string{"pla.inria.keyed", "pla.kr.seoul.keyed", "pla.inria.a"} {
			Eventually(sliceGone(full)).Should(BeTrue(), "%s kept running without a key that verifies its ticket", full)
		}
		Eventually(eventReasons("ata", "Ticket", "key-direct")).Should(ContainElement(string(ticket.BadSignature)))
		Eventually(eventReasons("ata", "Ticket", "key-delegated")).Should(ContainElement(string(ticket.BadDelegation)))
	})

	It("removes the pool parts of a deleted Authority", func() {
		// The key is back, so that a part exists again (the last test's pool grant).
		a := &planetv1.Authority{}
		Expect(updateSpec(client.ObjectKey{Name: "pla"}, a, func() {
			a.Spec.Keys = []planetv1.AuthorityKey{{ID: pla.KeyID, PublicKey: ticket.EncodePublicKey(pla.Key.Public().(ed25519.PublicKey))}}
		})).To(Succeed())
		slice := applyTicket("ata", "gone-slice", issue(pla, grant("gone-1", "pla.inria.gone", now, nil)))
		Eventually(ticketReady(slice)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		part := applyTicket("atb", "gone-part", issue(pla, poolGrant("gone-2", "atb/atb-root", "pla.inria.gone")))
		Eventually(ticketReady(part)).Should(withReason(metav1.ConditionTrue, planetv1.ReasonRedeemed))
		Expect(k8s.Delete(ctx, &planetv1.Authority{ObjectMeta: metav1.ObjectMeta{Name: "pla"}})).To(Succeed())
		Eventually(func(g Gomega) []planetv1.ResourcePool {
			list := &planetv1.ResourcePoolList{}
			g.Expect(k8s.List(ctx, list, client.MatchingLabels{planetv1.LabelAuthority: "pla"})).To(Succeed())
			var live []planetv1.ResourcePool
			for _, p := range list.Items {
				if p.DeletionTimestamp.IsZero() {
					live = append(live, p)
				}
			}
			return live
		}).Should(BeEmpty())
	})
})

var _ = Describe("The install's own Authority", func() {
	It("lists only its key Secret's key: one added by hand is removed, with an event; deleted, it is published again", func() {
		own := &planetv1.Authority{}
		Eventually(func() error { return k8s.Get(ctx, client.ObjectKey{Name: "plc"}, own) }).Should(Succeed())
		want := own.Spec.Keys
		Expect(want).To(HaveLen(1))
		intruder := ticket.NewSigner("plc", testKey("i"))
		Expect(updateSpec(client.ObjectKey{Name: "plc"}, own, func() {
			own.Spec.Keys = append(own.Spec.Keys, planetv1.AuthorityKey{ID: intruder.KeyID, PublicKey: ticket.EncodePublicKey(intruder.Key.Public().(ed25519.PublicKey))})
		})).To(Succeed())
		Eventually(func(g Gomega) []planetv1.AuthorityKey {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "plc"}, own)).To(Succeed())
			return own.Spec.Keys
		}).Should(Equal(want))
		Eventually(eventReasons("default", "Authority", "plc")).Should(ContainElement(planetv1.ReasonKeysCorrected))

		Expect(k8s.Delete(ctx, own)).To(Succeed())
		Eventually(func(g Gomega) {
			got := &planetv1.Authority{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "plc"}, got)).To(Succeed())
			g.Expect(got.DeletionTimestamp.IsZero()).To(BeTrue(), "still being deleted")
			g.Expect(got.Spec.Keys).To(Equal(want))
		}).Should(Succeed())
	})
})

// sliceRecordHash is the hash part of a slice's floor record's name.
func sliceRecordHash(full string) string {
	sum := sha256.Sum256([]byte("slice/" + full))
	return hex.EncodeToString(sum[:10])
}

// recordNameOf is the name of an issuer's jti record (as the Ticket
// controller names it).
func recordNameOf(issuer, jti string) string {
	sum := sha256.Sum256([]byte(issuer + "/" + jti))
	return "ticket-" + hex.EncodeToString(sum[:10])
}

var _ = Describe("The records of redeemed tickets", func() {
	It("are pruned once what they are about expired, and only then", func() {
		ns := "records-prune"
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		now := time.Now()
		record := func(name, kind, expires string) {
			GinkgoHelper()
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string]string{"expires": expires}}
			if kind != "" {
				cm.Labels = map[string]string{planetv1.LabelTicketRecord: kind}
			}
			Expect(k8s.Create(ctx, cm)).To(Succeed())
		}
		record("expired-jti", "jti", now.Add(-2*time.Minute).UTC().Format(time.RFC3339))
		record("expired-floor", "slice", now.Add(-time.Hour).UTC().Format(time.RFC3339))
		record("within-skew", "jti", now.Add(-30*time.Second).UTC().Format(time.RFC3339))
		record("alive", "slice", now.Add(time.Hour).UTC().Format(time.RFC3339))
		record("unreadable", "jti", "not a time")
		record("not-a-record", "", now.Add(-time.Hour).UTC().Format(time.RFC3339))

		pruner := &controllers.RecordPruner{Client: k8s, APIReader: k8s, Namespace: ns, Now: func() time.Time { return now }}
		n, err := pruner.Prune(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(n).To(Equal(2))
		left := &corev1.ConfigMapList{}
		Expect(k8s.List(ctx, left, client.InNamespace(ns))).To(Succeed())
		var names []string
		for _, cm := range left.Items {
			if cm.Name != "kube-root-ca.crt" {
				names = append(names, cm.Name)
			}
		}
		Expect(names).To(ConsistOf("within-skew", "alive", "unreadable", "not-a-record"))
	})
})

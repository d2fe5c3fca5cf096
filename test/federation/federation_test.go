package federation

import (
	"encoding/json"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/controllers"
	"github.com/planetkube/planetkube/internal/federation"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/ticket"
)

// pushSecret is the Secret, in plc's manager namespace, holding the
// kubeconfig that reaches ple.
const pushSecret = "peer-ple"

// homeSlice makes a slice of plc at site that spans ple too.
func homeSlice(site, name string) *planetv1.Slice {
	return &planetv1.Slice{
		ObjectMeta: metav1.ObjectMeta{Namespace: site, Name: name},
		Spec: planetv1.SliceSpec{
			Description: "federated " + name,
			Template:    planetv1.SliverTemplate{Image: "registry.example/" + name + ":1"},
			Nodes:       planetv1.SliceNodes{Authorities: []string{"ple"}},
		},
	}
}

// entry returns the home slice's federation entry for ple.
func entry(s *planetv1.Slice) func(Gomega) planetv1.SliceFederation {
	return func(g Gomega) planetv1.SliceFederation {
		got := &planetv1.Slice{}
		g.Expect(plc.k8s.Get(ctx, client.ObjectKeyFromObject(s), got)).To(Succeed())
		for _, e := range got.Status.Federation {
			if e.Authority == "ple" {
				return e
			}
		}
		return planetv1.SliceFederation{}
	}
}

// homeTicket returns the ticket plc gave ple for a slice, from the Secret
// of plc's manager namespace where it is kept (never in the slice's status).
func homeTicket(s *planetv1.Slice) string {
	GinkgoHelper()
	secret := &corev1.Secret{}
	name := controllers.FederationTicketsSecret(naming.FullName("plc", s.Namespace, s.Name))
	Expect(plc.k8s.Get(ctx, client.ObjectKey{Namespace: "planetkube-system", Name: name}, secret)).To(Succeed())
	return string(secret.Data["ple"])
}

// copyAtPle applies a copy of a token at ple as a Ticket of site inria's
// namespace, as anyone there who got hold of it could.
func copyAtPle(name, token string) *planetv1.Ticket {
	GinkgoHelper()
	t := &planetv1.Ticket{ObjectMeta: metav1.ObjectMeta{Namespace: "inria", Name: name}, Spec: planetv1.TicketSpec{Token: token}}
	Expect(ple.k8s.Create(ctx, t)).To(Succeed())
	return t
}

// pleTicketReason returns the reason of a Ticket's Ready condition at ple.
func pleTicketReason(t *planetv1.Ticket) func(Gomega) string {
	return func(g Gomega) string {
		got := &planetv1.Ticket{}
		g.Expect(ple.k8s.Get(ctx, client.ObjectKeyFromObject(t), got)).To(Succeed())
		c := meta.FindStatusCondition(got.Status.Conditions, planetv1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		return c.Reason
	}
}

// foreign returns the key of plc's slice at ple, and its slivers' namespace.
func foreign(s *planetv1.Slice) (client.ObjectKey, string) {
	return client.ObjectKey{Namespace: naming.AuthorityNamespace("plc"), Name: naming.ForeignSliceName(s.Namespace, s.Name)},
		naming.ForeignSliceNamespace("plc", s.Namespace, s.Name)
}

// foreignAtPle reads plc's slice at ple.
func foreignAtPle(s *planetv1.Slice) func(Gomega) *planetv1.Slice {
	key, _ := foreign(s)
	return func(g Gomega) *planetv1.Slice {
		got := &planetv1.Slice{}
		g.Expect(ple.k8s.Get(ctx, key, got)).To(Succeed())
		return got
	}
}

// goneAtPle succeeds when plc's slice is not at ple.
func goneAtPle(s *planetv1.Slice) func() bool {
	key, _ := foreign(s)
	return func() bool { return apierrors.IsNotFound(ple.k8s.Get(ctx, key, &planetv1.Slice{})) }
}

// update changes an object with retries on conflict.
func update[T client.Object](c client.Client, obj T, mut func(T)) {
	GinkgoHelper()
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mut(obj)
		return c.Update(ctx, obj)
	})).To(Succeed())
}

// feedSynced returns ple's FeedSynced condition for plc, once it describes
// the Authority's current generation.
func feedSynced(g Gomega) *metav1.Condition {
	a := &planetv1.Authority{}
	g.Expect(ple.k8s.Get(ctx, client.ObjectKey{Name: "plc"}, a)).To(Succeed())
	c := meta.FindStatusCondition(a.Status.Conditions, planetv1.ConditionFeedSynced)
	g.Expect(c).NotTo(BeNil())
	g.Expect(c.ObservedGeneration).To(Equal(a.Generation))
	return c
}

var _ = Describe("Federation of two installs", Ordered, func() {
	var inria, upmc sets.Set[string]

	BeforeAll(func() {
		inria, upmc = ple.nodes("inria"), ple.nodes("upmc")
		Expect(inria.Len()).To(Equal(6))
		// plc knows ple and pushes to it; ple knows plc without its feed
		// for now (push only).
		kubeconfig, err := ple.cluster.PushAccess(ctx, "plc")
		Expect(err).NotTo(HaveOccurred())
		Expect(plc.k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "planetkube-system", Name: pushSecret},
			Data:       map[string][]byte{"kubeconfig": kubeconfig},
		})).To(Succeed())
		atPlc := ple.authorityOf()
		atPlc.Spec.Push = &planetv1.AuthorityPush{SecretName: pushSecret}
		atPlc.Spec.FeedURL, atPlc.Spec.FeedCABundle = "", ""
		Expect(plc.k8s.Create(ctx, atPlc)).To(Succeed())
		atPle := plc.authorityOf()
		atPle.Spec.FeedURL, atPle.Spec.FeedCABundle = "", ""
		Expect(ple.k8s.Create(ctx, atPle)).To(Succeed())
		Eventually(func(g Gomega) {
			a := &planetv1.Authority{}
			g.Expect(plc.k8s.Get(ctx, client.ObjectKey{Name: "ple"}, a)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(a.Status.Conditions, planetv1.ConditionPushReady)).To(BeTrue(), "%v", a.Status.Conditions)
		}).Should(Succeed())
	})

	It("refuses a push kubeconfig that runs a command, and says why", func() {
		good, err := ple.cluster.PushAccess(ctx, "plc")
		Expect(err).NotTo(HaveOccurred())
		cfg, err := clientcmd.Load(good)
		Expect(err).NotTo(HaveOccurred())
		for _, u := range cfg.AuthInfos {
			u.Token, u.Exec = "", &clientcmdapi.ExecConfig{APIVersion: "client.authentication.k8s.io/v1", Command: "/bin/sh"}
		}
		bad, err := clientcmd.Write(*cfg)
		Expect(err).NotTo(HaveOccurred())
		Expect(plc.k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "planetkube-system", Name: "peer-bad"},
			Data:       map[string][]byte{"kubeconfig": bad},
		})).To(Succeed())
		a := ple.authorityOf()
		a.Name, a.Spec.FeedURL, a.Spec.FeedCABundle = "badpeer", "", ""
		a.Spec.Push = &planetv1.AuthorityPush{SecretName: "peer-bad"}
		Expect(plc.k8s.Create(ctx, a)).To(Succeed())
		Eventually(func(g Gomega) {
			got := &planetv1.Authority{}
			g.Expect(plc.k8s.Get(ctx, client.ObjectKey{Name: "badpeer"}, got)).To(Succeed())
			c := meta.FindStatusCondition(got.Status.Conditions, planetv1.ConditionPushReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(planetv1.ReasonInvalidKubeconfig))
			g.Expect(c.Message).To(ContainSubstring("exec"))
		}).Should(Succeed())
		Expect(plc.k8s.Delete(ctx, a)).To(Succeed())
	})

	Context("push", func() {
		s := homeSlice("princeton", "codeen")

		It("applies a ticket at the peer, whose trusting site runs the slice; the home shows the peer's slivers", func() {
			Expect(plc.k8s.Create(ctx, s)).To(Succeed())
			Eventually(func(g Gomega) {
				e := entry(s)(g)
				g.Expect(e.Phase).To(Equal(planetv1.FederationRedeemed), "%+v", e)
				g.Expect(e.Slivers).To(Equal("6/6"))
			}, "90s").Should(Succeed())
			_, ns := foreign(s)
			Eventually(ple.runningIn(ns)).Should(Equal(inria), "slivers on inria's nodes (it trusts plc), none on upmc's")
			Expect(ple.runningIn(ns)().Intersection(upmc).Len()).To(BeZero())
			got := foreignAtPle(s)(Default)
			Expect(got.Status.FullName).To(Equal("plc.princeton.codeen"))
			Expect(got.Spec.Nodes.Authorities).To(BeEmpty(), "a peer does not pass the slice on")
			// The home runs its own slivers too.
			Eventually(plc.runningIn(naming.SliceNamespace("princeton", "codeen"))).Should(Equal(plc.nodes("princeton", "mit")))
		})

		It("renews at the peer, replacing the old ticket there once the new one is redeemed", func() {
			was := entry(s)(Default).TicketID
			later := metav1.NewTime(time.Now().Add(20 * 24 * time.Hour).Truncate(time.Second))
			update(plc.k8s, s, func(o *planetv1.Slice) { o.Spec.ExpiresAt = &later })
			Eventually(func(g Gomega) {
				e := entry(s)(g)
				g.Expect(e.TicketID).NotTo(Equal(was))
				g.Expect(e.Phase).To(Equal(planetv1.FederationRedeemed))
				g.Expect(foreignAtPle(s)(g).Spec.ExpiresAt.Unix()).To(Equal(later.Unix()))
				tickets := &planetv1.TicketList{}
				g.Expect(ple.k8s.List(ctx, tickets, client.InNamespace("planetkube-peer-plc"),
					client.MatchingLabels{planetv1.LabelSliceID: federation.SliceID("plc.princeton.codeen")})).To(Succeed())
				g.Expect(tickets.Items).To(HaveLen(1), "the old ticket is withdrawn once the new one is redeemed")
			}).Should(Succeed())
			_, ns := foreign(s)
			Consistently(ple.runningIn(ns), "2s").Should(Equal(inria), "renewal keeps the slivers")
		})

		It("suspends and resumes at the peer", func() {
			_, ns := foreign(s)
			update(plc.k8s, s, func(o *planetv1.Slice) { o.Spec.State = planetv1.SliceSuspended })
			Eventually(func(g Gomega) planetv1.SliceState { return foreignAtPle(s)(g).Spec.State }).Should(Equal(planetv1.SliceSuspended))
			Eventually(ple.runningIn(ns)).Should(BeEmpty())
			update(plc.k8s, s, func(o *planetv1.Slice) { o.Spec.State = planetv1.SliceActive })
			Eventually(ple.runningIn(ns)).Should(Equal(inria))
		})

		It("keeps the ticket out of the slice's status, where its site's people read it", func() {
			token := homeTicket(s)
			got := &planetv1.Slice{}
			Expect(plc.k8s.Get(ctx, client.ObjectKeyFromObject(s), got)).To(Succeed())
			status, err := json.Marshal(got.Status)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(status)).NotTo(ContainSubstring(token[:40]))
			Expect(string(status)).To(ContainSubstring(entry(s)(Default).TicketID))
		})

		It("deletes at the peer when the home slice is deleted, and revokes every copy of its ticket there, across a restart", func() {
			// Someone at ple who got hold of the token applies a copy of their own.
			token := homeTicket(s)
			copied := copyAtPle("codeen-copy", token)
			Eventually(pleTicketReason(copied)).Should(Equal(planetv1.ReasonRedeemed))

			Expect(plc.k8s.Delete(ctx, s)).To(Succeed())
			Eventually(goneAtPle(s)).Should(BeTrue())
			_, ns := foreign(s)
			Eventually(ple.runningIn(ns)).Should(BeEmpty())
			Eventually(func() error { return plc.k8s.Get(ctx, client.ObjectKeyFromObject(s), &planetv1.Slice{}) }).Should(Satisfy(apierrors.IsNotFound))
			Eventually(pleTicketReason(copied)).Should(Equal(string(ticket.Revoked)))
			Consistently(goneAtPle(s), "3s").Should(BeTrue(), "the copy kept the slice")

			By("restarting ple's manager: a copy applied again is still refused")
			Expect(ple.mgr.Stop()).To(Succeed())
			ple.startManager()
			again := copyAtPle("codeen-copy-again", token)
			Eventually(pleTicketReason(again), "90s").Should(Equal(string(ticket.Revoked)))
			Expect(goneAtPle(s)()).To(BeTrue())
		})
	})

	Context("expiry", func() {
		s := homeSlice("princeton", "brief")

		It("withdraws an expired slice from the peer: a copy of an older, longer ticket does not outlive it", func() {
			later := metav1.NewTime(time.Now().Add(10 * time.Minute).Truncate(time.Second))
			s.Spec.ExpiresAt = &later
			Expect(plc.k8s.Create(ctx, s)).To(Succeed())
			Eventually(func(g Gomega) planetv1.FederationPhase { return entry(s)(g).Phase }, "90s").Should(Equal(planetv1.FederationRedeemed))
			first := entry(s)(Default).TicketID
			copied := copyAtPle("brief-copy", homeTicket(s)) // valid for 10 minutes
			Eventually(pleTicketReason(copied)).Should(Equal(planetv1.ReasonRedeemed))

			By("the home shortens the slice to 30 s: a newer ticket expires before the copy")
			soon := metav1.NewTime(time.Now().Add(30 * time.Second).Truncate(time.Second))
			update(plc.k8s, s, func(o *planetv1.Slice) { o.Spec.ExpiresAt = &soon })
			Eventually(func(g Gomega) {
				e := entry(s)(g)
				g.Expect(e.TicketID).NotTo(Equal(first))
				g.Expect(e.Phase).To(Equal(planetv1.FederationRedeemed))
			}).Should(Succeed())

			Eventually(func(g Gomega) {
				e := entry(s)(g)
				g.Expect(e.Phase).To(Equal(planetv1.FederationWithdrawn), "%+v", e)
				g.Expect(e.Reason).To(Equal(planetv1.ReasonExpired))
			}, "90s").Should(Succeed())
			Eventually(goneAtPle(s)).Should(BeTrue())
			Eventually(pleTicketReason(copied)).Should(Equal(string(ticket.Revoked)))
			Consistently(goneAtPle(s), "3s").Should(BeTrue(), "the copy kept the expired slice")
			Expect(plc.k8s.Delete(ctx, s)).To(Succeed())
		})
	})

	Context("pull", func() {
		s := homeSlice("mit", "measure")

		BeforeAll(func() {
			// plc stops pushing; ple polls plc's feed.
			update(plc.k8s, &planetv1.Authority{ObjectMeta: metav1.ObjectMeta{Name: "ple"}}, func(a *planetv1.Authority) { a.Spec.Push = nil })
			want := plc.authorityOf()
			update(ple.k8s, &planetv1.Authority{ObjectMeta: metav1.ObjectMeta{Name: "plc"}}, func(a *planetv1.Authority) {
				a.Spec.FeedURL, a.Spec.FeedCABundle, a.Spec.PollIntervalSeconds = want.Spec.FeedURL, want.Spec.FeedCABundle, pollSeconds
			})
			Eventually(func(g Gomega) { g.Expect(feedSynced(g).Status).To(Equal(metav1.ConditionTrue)) }).Should(Succeed())
		})

		It("lists the ticket in the feed; the peer polls, redeems it and runs the slice", func() {
			Expect(plc.k8s.Create(ctx, s)).To(Succeed())
			Eventually(func(g Gomega) planetv1.FederationPhase { return entry(s)(g).Phase }).Should(Equal(planetv1.FederationIssued))
			_, ns := foreign(s)
			Eventually(ple.runningIn(ns), "60s").Should(Equal(inria))
			tickets := &planetv1.TicketList{}
			Expect(ple.k8s.List(ctx, tickets, client.InNamespace(naming.AuthorityNamespace("plc")), client.MatchingLabels{planetv1.LabelTicketSource: "feed", planetv1.LabelSliceID: federation.SliceID("plc.mit.measure")})).To(Succeed())
			Expect(tickets.Items).To(HaveLen(1))
			Expect(tickets.Items[0].Spec.Token).To(Equal(homeTicket(s)))
			// The feed also offers the withdrawal of the slice deleted before
			// (push above), which ple redeems: its copies there stay revoked.
			Eventually(func(g Gomega) {
				g.Expect(ple.k8s.List(ctx, tickets, client.InNamespace(naming.AuthorityNamespace("plc")),
					client.MatchingLabels{planetv1.LabelSliceID: federation.SliceID("plc.princeton.codeen")})).To(Succeed())
				g.Expect(tickets.Items).To(HaveLen(1))
				g.Expect(pleTicketReason(&tickets.Items[0])(g)).To(Equal(planetv1.ReasonWithdrawn))
			}).Should(Succeed())
		})

		It("renews by the feed at the next poll", func() {
			later := metav1.NewTime(time.Now().Add(21 * 24 * time.Hour).Truncate(time.Second))
			update(plc.k8s, s, func(o *planetv1.Slice) { o.Spec.ExpiresAt = &later })
			Eventually(func(g Gomega) int64 { return foreignAtPle(s)(g).Spec.ExpiresAt.Unix() }, "60s").Should(Equal(later.Unix()))
			Eventually(func(g Gomega) {
				tickets := &planetv1.TicketList{}
				g.Expect(ple.k8s.List(ctx, tickets, client.InNamespace(naming.AuthorityNamespace("plc")), client.MatchingLabels{planetv1.LabelTicketSource: "feed", planetv1.LabelSliceID: federation.SliceID("plc.mit.measure")})).To(Succeed())
				g.Expect(tickets.Items).To(HaveLen(1), "the replaced ticket is deleted at the poll after the new one is redeemed")
			}, "60s").Should(Succeed())
		})

		It("is told its feed is unchanged between changes, and keeps following it", func() {
			// ple holds the version of the feed it followed last; plc
			// answers Unchanged, listing no ticket, while its Secrets and
			// their tickets stay as they are.
			Eventually(func(g Gomega) {
				c := feedSynced(g)
				g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
				g.Expect(c.Message).To(ContainSubstring("the feed is unchanged since it was read whole"))
			}, "60s").Should(Succeed())
			_, ns := foreign(s)
			Expect(ple.runningIn(ns)()).To(Equal(inria))
			tickets := &planetv1.TicketList{}
			Expect(ple.k8s.List(ctx, tickets, client.InNamespace(naming.AuthorityNamespace("plc")), client.MatchingLabels{planetv1.LabelTicketSource: "feed", planetv1.LabelSliceID: federation.SliceID("plc.mit.measure")})).To(Succeed())
			Expect(tickets.Items).To(HaveLen(1))
			Expect(tickets.Items[0].Spec.Token).To(Equal(homeTicket(s)))
		})

		It("withdraws a deleted slice by the feed, and revokes every copy of its ticket", func() {
			copied := copyAtPle("measure-copy", homeTicket(s))
			Eventually(pleTicketReason(copied)).Should(Equal(planetv1.ReasonRedeemed))
			Expect(plc.k8s.Delete(ctx, s)).To(Succeed())
			Eventually(goneAtPle(s), "60s").Should(BeTrue())
			Eventually(pleTicketReason(copied)).Should(Equal(string(ticket.Revoked)))
			Consistently(goneAtPle(s), "3s").Should(BeTrue(), "the copy kept the slice")
		})

		It("applies each ticket of a feed on its own: one no site trusts does not hold back a withdrawal", func() {
			keep, drop := homeSlice("mit", "keep"), homeSlice("mit", "drop")
			for _, h := range []*planetv1.Slice{keep, drop} {
				Expect(plc.k8s.Create(ctx, h)).To(Succeed())
				_, ns := foreign(h)
				Eventually(ple.runningIn(ns), "60s").Should(Equal(inria))
			}
			By("inria stops trusting plc; at plc, keep is renewed (a new ticket, now trusted nowhere at ple) and drop deleted")
			site := &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "inria"}}
			update(ple.k8s, site, func(o *planetv1.Site) { o.Spec.TrustedAuthorities = []string{"ple"} })
			later := metav1.NewTime(time.Now().Add(23 * 24 * time.Hour).Truncate(time.Second))
			update(plc.k8s, keep, func(o *planetv1.Slice) { o.Spec.ExpiresAt = &later })
			Expect(plc.k8s.Delete(ctx, drop)).To(Succeed())

			Eventually(goneAtPle(drop), "60s").Should(BeTrue(), "the withdrawal waited on a ticket no site trusts")
			Eventually(func(g Gomega) {
				c := feedSynced(g)
				g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
				g.Expect(c.Reason).To(Equal(string(ticket.NotTrusted)))
				g.Expect(c.Message).To(ContainSubstring("plc.mit.keep"))
			}, "60s").Should(Succeed())
			// The refused renewal is not applied: keep's Ticket from before is
			// held (its slice released meanwhile: no site trusts plc).
			held := &planetv1.TicketList{}
			Expect(ple.k8s.List(ctx, held, client.InNamespace(naming.AuthorityNamespace("plc")),
				client.MatchingLabels{planetv1.LabelSliceID: federation.SliceID("plc.mit.keep")})).To(Succeed())
			Expect(held.Items).To(HaveLen(1))
			Eventually(pleTicketReason(&held.Items[0])).Should(Equal(string(ticket.NotTrusted)))

			By("trusted again, the renewal is applied at the next poll")
			update(ple.k8s, site, func(o *planetv1.Site) { o.Spec.TrustedAuthorities = []string{"ple", "plc"} })
			Eventually(func(g Gomega) int64 { return foreignAtPle(keep)(g).Spec.ExpiresAt.Unix() }, "60s").Should(Equal(later.Unix()))
			Eventually(func(g Gomega) { g.Expect(feedSynced(g).Status).To(Equal(metav1.ConditionTrue)) }, "60s").Should(Succeed())
			Expect(plc.k8s.Delete(ctx, keep)).To(Succeed())
			Eventually(goneAtPle(keep), "60s").Should(BeTrue())
		})
	})

	Context("partition and heal", func() {
		s := homeSlice("mit", "steady")

		It("keeps foreign slices running while the home is unreachable, says so, and converges when it returns", func() {
			Expect(plc.k8s.Create(ctx, s)).To(Succeed())
			_, ns := foreign(s)
			Eventually(ple.runningIn(ns), "60s").Should(Equal(inria))

			Expect(plc.mgr.Stop()).To(Succeed())
			Eventually(func(g Gomega) string { return feedSynced(g).Reason }, "60s").Should(Equal(planetv1.ReasonFeedUnreachable))
			Expect(ple.runningIn(ns)()).To(Equal(inria), "a home that is away takes nothing away")
			// The home's owner renews while its manager is down.
			later := metav1.NewTime(time.Now().Add(22 * 24 * time.Hour).Truncate(time.Second))
			update(plc.k8s, s, func(o *planetv1.Slice) { o.Spec.ExpiresAt = &later })

			plc.startManager()
			Eventually(func(g Gomega) {
				g.Expect(feedSynced(g).Status).To(Equal(metav1.ConditionTrue))
				g.Expect(foreignAtPle(s)(g).Spec.ExpiresAt.Unix()).To(Equal(later.Unix()))
			}, "90s").Should(Succeed())
			Expect(ple.runningIn(ns)()).To(Equal(inria))
		})
	})

	Context("hostile feeds", func() {
		s := homeSlice("mit", "steady")

		It("refuses each with a reason and touches nothing running", func() {
			hostile := newHostileFeed(plc.signer(), "ple")
			DeferCleanup(hostile.Close)
			_, ns := foreign(s)
			before := foreignAtPle(s)(Default)
			real := plc.authorityOf()
			for _, tc := range []struct{ path, reason string }{
				{"/forged", "BadSignature"},
				{"/garbage", "Malformed"},
				{"/oversized", "Oversized"},
				{"/slow", planetv1.ReasonFeedUnreachable},
				{"/other-audience", "WrongAudience"},
				{"/replayed-feed", "Mismatch"},
				{"/old-ticket", "Replayed"},
			} {
				By("serving " + tc.path)
				update(ple.k8s, &planetv1.Authority{ObjectMeta: metav1.ObjectMeta{Name: "plc"}}, func(a *planetv1.Authority) {
					a.Spec.FeedURL, a.Spec.FeedCABundle = hostile.URL+tc.path, hostile.CA
				})
				Eventually(func(g Gomega) {
					c := feedSynced(g)
					g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
					g.Expect(c.Reason).To(Equal(tc.reason), c.Message)
				}, "30s").Should(Succeed())
				got := foreignAtPle(s)(Default)
				Expect(got.ResourceVersion).To(Equal(before.ResourceVersion), "a refused feed changed the slice")
				Expect(ple.runningIn(ns)()).To(Equal(inria))
			}
			update(ple.k8s, &planetv1.Authority{ObjectMeta: metav1.ObjectMeta{Name: "plc"}}, func(a *planetv1.Authority) {
				a.Spec.FeedURL, a.Spec.FeedCABundle = real.Spec.FeedURL, real.Spec.FeedCABundle
			})
			Eventually(func(g Gomega) { g.Expect(feedSynced(g).Status).To(Equal(metav1.ConditionTrue)) }).Should(Succeed())
		})

		It("answers no one but a known peer", func() {
			status, body := requestFeed(plc.cluster, seedKey("x"), "ple")
			Expect(status).To(Equal(401), body)
		})
	})

	Context("soft state", func() {
		It("gives a wiped and reinstalled install every foreign slice back at its first poll", func() {
			var homes []*planetv1.Slice
			for i := range 5 {
				h := homeSlice("princeton", fmt.Sprintf("soft-%d", i))
				Expect(plc.k8s.Create(ctx, h)).To(Succeed())
				homes = append(homes, h)
			}
			for _, h := range homes {
				Eventually(func(g Gomega) bool { return goneAtPle(h)() }, "60s").Should(BeFalse())
			}
			By("wiping ple: its cluster, etcd and all, goes; a new one is installed with the same key")
			Expect(ple.cluster.Stop()).To(Succeed())
			ple.start()
			Expect(ple.k8s.Create(ctx, plc.authorityOf())).To(Succeed())
			began := time.Now()
			for _, h := range append(homes, homeSlice("mit", "steady")) {
				_, ns := foreign(h)
				Eventually(ple.runningIn(ns), "60s").Should(Equal(ple.nodes("inria")), h.Name)
			}
			GinkgoWriter.Printf("Every foreign slice was back and running %s after the reinstall (poll interval %d s)\n", time.Since(began).Round(time.Second), pollSeconds)
		})

		It("removes every slice of a peer deleted for good (kubectl delete authority)", func() {
			Expect(ple.k8s.Delete(ctx, &planetv1.Authority{ObjectMeta: metav1.ObjectMeta{Name: "plc"}})).To(Succeed())
			Eventually(func() error {
				return ple.k8s.Get(ctx, client.ObjectKey{Name: "plc"}, &planetv1.Authority{})
			}, "90s").Should(Satisfy(apierrors.IsNotFound))
			_, ns := foreign(homeSlice("mit", "steady"))
			Eventually(ple.runningIn(ns)).Should(BeEmpty())
		})
	})
})

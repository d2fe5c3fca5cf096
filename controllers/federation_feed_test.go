package controllers_test

import (
	"context"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/controllers"
	"github.com/planetkube/planetkube/internal/federation/feed"
	"github.com/planetkube/planetkube/internal/ticket"
)

var _ = Describe("The feed's tickets", func() {
	It("serves each peer its unexpired tickets, and follows a Secret rewritten or deleted", func() {
		const ns = "feed-tickets"
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		home := ticket.NewSigner("plc", testKey("f"))
		now := time.Now()
		token := func(peer, jti string, expires time.Time) []byte {
			c := sliverGrant(jti, "plc.a.s", now.Add(-time.Hour), func(c *ticket.Claims) { c.Audience, c.Expiry = peer, expires.Unix() })
			return []byte(issueTicket(home, c))
		}
		secret := func(name string, data map[string][]byte) *corev1.Secret {
			return &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{planetv1.LabelFederationTickets: "true"}},
				Data:       data,
			}
		}
		a1, a2 := token("ple", "0000000000000000000000000000000a", now.Add(time.Hour)), token("plj", "0000000000000000000000000000000b", now.Add(time.Hour))
		b1 := token("ple", "0000000000000000000000000000000c", now.Add(-time.Minute)) // expired
		a := secret("a", map[string][]byte{"ple": a1, "plj": a2})
		b := secret("b", map[string][]byte{"ple": b1, "junk": []byte("not a ticket")})
		Expect(k8s.Create(ctx, a)).To(Succeed())
		Expect(k8s.Create(ctx, b)).To(Succeed())

		f := &controllers.FeedTickets{Reader: k8s, Namespace: ns}
		// ticketsFor is what an older peer (asking for no version) is sent.
		ticketsFor := func(peer string, at time.Time) []string {
			GinkgoHelper()
			ans, err := f.Answer(ctx, peer, "", at)
			Expect(err).NotTo(HaveOccurred())
			Expect(ans.Version).To(BeEmpty())
			return ans.Tickets
		}
		Expect(ticketsFor("ple", now)).To(Equal([]string{string(a1)}))
		Expect(ticketsFor("plj", now)).To(Equal([]string{string(a2)}))
		Expect(ticketsFor("junk", now)).To(BeEmpty())
		Expect(ticketsFor("ple", now.Add(2*time.Hour))).To(BeEmpty(), "a ticket expired since it was first read")

		By("a Secret rewritten: its new ticket's expiry counts, not the remembered one")
		b2 := token("ple", "0000000000000000000000000000000d", now.Add(time.Hour))
		b.Data["ple"] = b2
		Expect(k8s.Update(ctx, b)).To(Succeed())
		Expect(ticketsFor("ple", now)).To(ConsistOf(string(a1), string(b2)))

		By("a Secret deleted: forgotten")
		Expect(controllers.FeedTicketsRemembered(f)).To(Equal(2))
		Expect(k8s.Delete(ctx, a)).To(Succeed())
		Expect(ticketsFor("ple", now)).To(Equal([]string{string(b2)}))
		Expect(controllers.FeedTicketsRemembered(f)).To(Equal(1))
	})

	It("answers Unchanged for the version a peer has, reading no Secret until they change or a ticket expires", func() {
		const ns = "feed-versions"
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		home := ticket.NewSigner("plc", testKey("f"))
		now := time.Now()
		token := func(jti string, expires time.Time) []byte {
			c := sliverGrant(jti, "plc.a.s", now.Add(-time.Hour), func(c *ticket.Claims) { c.Audience, c.Expiry = "ple", expires.Unix() })
			return []byte(issueTicket(home, c))
		}
		a1 := token("0000000000000000000000000000001a", now.Add(time.Hour))
		a := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "a", Labels: map[string]string{planetv1.LabelFederationTickets: "true"}},
			Data:       map[string][]byte{"ple": a1},
		}
		Expect(k8s.Create(ctx, a)).To(Succeed())
		reads := &countingReader{Reader: k8s}
		f := &controllers.FeedTickets{Reader: reads, Namespace: ns}

		By("an older requester (no version asked) gets the tickets and no version")
		ans, err := f.Answer(ctx, "ple", "", now)
		Expect(err).NotTo(HaveOccurred())
		Expect(ans).To(Equal(feed.Answer{Tickets: []string{string(a1)}}))

		By("a first versioned request gets the tickets and their version")
		ans, err = f.Answer(ctx, "ple", feed.HaveNone, now)
		Expect(err).NotTo(HaveOccurred())
		Expect(ans.Tickets).To(Equal([]string{string(a1)}))
		Expect(ans.Version).To(Equal(feed.Version(ans.Tickets)))
		v1 := ans.Version

		By("the same version again: Unchanged, with no read")
		before := reads.lists.Load()
		ans, err = f.Answer(ctx, "ple", v1, now)
		Expect(err).NotTo(HaveOccurred())
		Expect(ans).To(Equal(feed.Answer{Version: v1, Unchanged: true}))
		Expect(reads.lists.Load()).To(Equal(before), "an unchanged answer reads no Secret")

		By("a Secret changed: read again, a new version")
		a2 := token("0000000000000000000000000000002a", now.Add(2*time.Hour))
		a.Data["ple"] = a2
		Expect(k8s.Update(ctx, a)).To(Succeed())
		f.Changed()
		ans, err = f.Answer(ctx, "ple", v1, now)
		Expect(err).NotTo(HaveOccurred())
		Expect(ans.Unchanged).To(BeFalse())
		Expect(ans.Tickets).To(Equal([]string{string(a2)}))
		v2 := ans.Version
		Expect(v2).NotTo(Equal(v1))

		By("a change that leaves the peer's tickets as they were: read again, still Unchanged")
		a.Data["plj"] = []byte("another peer's")
		Expect(k8s.Update(ctx, a)).To(Succeed())
		f.Changed()
		before = reads.lists.Load()
		ans, err = f.Answer(ctx, "ple", v2, now)
		Expect(err).NotTo(HaveOccurred())
		Expect(ans).To(Equal(feed.Answer{Version: v2, Unchanged: true}))
		Expect(reads.lists.Load()).To(Equal(before + 1))

		By("the ticket expired: read again, and it is gone")
		ans, err = f.Answer(ctx, "ple", v2, now.Add(3*time.Hour))
		Expect(err).NotTo(HaveOccurred())
		Expect(ans.Unchanged).To(BeFalse())
		Expect(ans.Tickets).To(BeEmpty())
		Expect(ans.Version).To(Equal(feed.Version(nil)))
	})
})

// countingReader counts the Lists that reach its Reader.
type countingReader struct {
	client.Reader
	lists atomic.Int64
}

func (r *countingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	r.lists.Add(1)
	return r.Reader.List(ctx, list, opts...)
}

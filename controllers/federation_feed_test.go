package controllers_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/controllers"
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
		Expect(f.For(ctx, "ple", now)).To(Equal([]string{string(a1)}))
		Expect(f.For(ctx, "plj", now)).To(Equal([]string{string(a2)}))
		Expect(f.For(ctx, "junk", now)).To(BeEmpty())
		Expect(f.For(ctx, "ple", now.Add(2*time.Hour))).To(BeEmpty(), "a ticket expired since it was first read")

		By("a Secret rewritten: its new ticket's expiry counts, not the remembered one")
		b2 := token("ple", "0000000000000000000000000000000d", now.Add(time.Hour))
		b.Data["ple"] = b2
		Expect(k8s.Update(ctx, b)).To(Succeed())
		Expect(f.For(ctx, "ple", now)).To(ConsistOf(string(a1), string(b2)))

		By("a Secret deleted: forgotten")
		Expect(controllers.FeedTicketsRemembered(f)).To(Equal(2))
		Expect(k8s.Delete(ctx, a)).To(Succeed())
		Expect(f.For(ctx, "ple", now)).To(Equal([]string{string(b2)}))
		Expect(controllers.FeedTicketsRemembered(f)).To(Equal(1))
	})
})

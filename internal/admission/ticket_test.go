package admission_test

import (
	"crypto/ed25519"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/ticket"
)

var _ = Describe("Ticket admission", Ordered, func() {
	key := func(seed string) ed25519.PrivateKey {
		return ed25519.NewKeyFromSeed([]byte(strings.Repeat(seed, ed25519.SeedSize)))
	}
	ple := ticket.NewSigner("ple", key("e"))
	plj := ticket.NewSigner("plj", key("j"))
	now := time.Now().Truncate(time.Second)
	token := func(s ticket.Signer, slice string, mutate func(*ticket.Claims)) string {
		GinkgoHelper()
		c := ticket.Claims{
			Audience: "plc", ID: slice, IssuedAt: now.Unix(), Expiry: now.Add(time.Hour).Unix(),
			Sliver: &ticket.SliverGrant{Slice: slice, Template: planetv1.SliverTemplate{Image: "pause"}},
		}
		if mutate != nil {
			mutate(&c)
		}
		tok, err := s.Issue(c)
		Expect(err).NotTo(HaveOccurred())
		return tok
	}
	create := func(name, tok string) error {
		return k8s.Create(ctx, &planetv1.Ticket{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: planetv1.TicketSpec{Token: tok}})
	}
	refusedFor := func(reason ticket.Reason) OmegaMatcher {
		return And(Satisfy(apierrors.IsInvalid), MatchError(ContainSubstring("spec.token")), MatchError(ContainSubstring(string(reason)+": ")))
	}

	BeforeAll(func() {
		for _, s := range []ticket.Signer{ple, plj} {
			Expect(k8s.Create(ctx, &planetv1.Authority{
				ObjectMeta: metav1.ObjectMeta{Name: s.Authority},
				Spec: planetv1.AuthoritySpec{Keys: []planetv1.AuthorityKey{{
					ID: s.KeyID, PublicKey: ticket.EncodePublicKey(s.Key.Public().(ed25519.PublicKey)),
				}}},
			})).To(Succeed())
		}
		Expect(k8s.Create(ctx, &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "tsite"}, Spec: planetv1.SiteSpec{TrustedAuthorities: []string{"ple"}}})).To(Succeed())
		// The webhook reads Authorities and Sites from the manager's cache.
		Eventually(func() error { return cached.Get(ctx, client.ObjectKey{Name: "tsite"}, &planetv1.Site{}) }).Should(Succeed())
		Eventually(func() error { return cached.Get(ctx, client.ObjectKey{Name: "plj"}, &planetv1.Authority{}) }).Should(Succeed())
	})

	It("admits a ticket that verifies and whose issuer a site trusts", func() {
		Expect(create("good", token(ple, "ple.inria.codeen", nil))).To(Succeed())
	})

	It("refuses at once, with the reason, a ticket that fails a check", func() {
		forged := ticket.Signer{Authority: "ple", KeyID: ple.KeyID, Key: key("x")}
		Expect(create("forged", token(forged, "ple.inria.forged", nil))).To(refusedFor(ticket.BadSignature))
		Expect(create("unknown", token(ticket.NewSigner("plx", key("x")), "plx.a.b", nil))).To(refusedFor(ticket.UnknownIssuer))
		Expect(create("expired", token(ple, "ple.inria.late", func(c *ticket.Claims) {
			c.IssuedAt, c.Expiry = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
		}))).To(refusedFor(ticket.Expired))
		Expect(create("misaddressed", token(ple, "ple.inria.elsewhere", func(c *ticket.Claims) { c.Audience = "plk" }))).To(refusedFor(ticket.WrongAudience))
		Expect(create("untrusted", token(plj, "plj.a.b", nil))).To(refusedFor(ticket.NotTrusted))
		Expect(create("garbage", "aaaaaaaaaaaa.bbbbbbbbbbbb.cccccccccccc")).To(refusedFor(ticket.Malformed))
	})
})

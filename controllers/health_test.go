package controllers_test

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/testing/argohealth"
	"github.com/planetkube/planetkube/internal/ticket"
)

// health is an object's health as kstatus (Flux, kubectl wait) and the
// chart's Argo CD health script compute it from the live object.
type health struct {
	KStatus status.Status
	Argo    string
}

var _ = Describe("Health as GitOps tools compute it", Ordered, func() {
	var (
		script string
		plh    = ticket.NewSigner("plh", testKey("h"))
		now    = time.Now().Add(-time.Minute).Truncate(time.Second)
	)
	healthOf := func(obj client.Object) func(Gomega) health {
		return func(g Gomega) health {
			gvks, _, err := k8s.Scheme().ObjectKinds(obj)
			g.Expect(err).NotTo(HaveOccurred())
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(gvks[0])
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(obj), u)).To(Succeed())
			res, err := status.Compute(u)
			g.Expect(err).NotTo(HaveOccurred())
			argo, err := argohealth.Evaluate(script, u.Object)
			g.Expect(err).NotTo(HaveOccurred())
			return health{KStatus: res.Status, Argo: argo.Status}
		}
	}
	create := func(obj client.Object) client.Object {
		GinkgoHelper()
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		return obj
	}
	issue := func(c ticket.Claims) string {
		GinkgoHelper()
		tok, err := plh.Issue(c)
		Expect(err).NotTo(HaveOccurred())
		return tok
	}

	BeforeAll(func() {
		b, err := os.ReadFile(filepath.Join("..", "charts", "planetkube", "health", "planetkube.lua"))
		Expect(err).NotTo(HaveOccurred())
		script = string(b)
		makeAuthority(plh)
		makeSite("hla", func(s *planetv1.SiteSpec) { s.TrustedAuthorities = []string{"plc", "plh"} })
		makeNode("hla-1", "hla", nil)
	})

	It("reads Sites: reconciled is Current, disabled is Current (Argo CD: Suspended), a namespace conflict is Failed", func() {
		Eventually(healthOf(&planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "hla"}})).Should(Equal(health{status.CurrentStatus, "Healthy"}))
		disabled := makeSite("hlb", func(s *planetv1.SiteSpec) { s.State = planetv1.SiteDisabled })
		Eventually(healthOf(disabled)).Should(Equal(health{status.CurrentStatus, "Suspended"}))
		create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "hlc"}})
		conflict := create(&planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "hlc"}})
		Eventually(healthOf(conflict)).Should(Equal(health{status.FailedStatus, "Degraded"}))
	})

	It("reads Slices: starting is InProgress, all slivers ready is Current, suspended is Current (Argo CD: Suspended), no matching node is Failed", func() {
		slice := create(newSlice("hla", "web", nil)).(*planetv1.Slice)
		Eventually(healthOf(slice)).Should(Equal(health{status.InProgressStatus, "Progressing"}))
		Eventually(sliverNodes(slice)).Should(Equal(sliversOn("web", "hla-1")))
		markSliversReady(slice)
		Eventually(healthOf(slice)).Should(Equal(health{status.CurrentStatus, "Healthy"}))
		Expect(updateSpec(client.ObjectKeyFromObject(slice), slice, func() { slice.Spec.State = planetv1.SliceSuspended })).To(Succeed())
		Eventually(healthOf(slice)).Should(Equal(health{status.CurrentStatus, "Suspended"}))
		lost := create(newSlice("hla", "lost", func(s *planetv1.SliceSpec) {
			s.Nodes.NodeSelection = planetv1.NodeSelection{Names: []string{"nowhere"}}
		}))
		Eventually(healthOf(lost)).Should(Equal(health{status.FailedStatus, "Degraded"}))
	})

	It("reads ResourcePools: accepted is Current, overcommitted is Failed", func() {
		ok := create(newPool("hla", "hp-ok", "", rl("cpu", "1"), "hla-1"))
		Eventually(healthOf(ok)).Should(Equal(health{status.CurrentStatus, "Healthy"}))
		over := create(newPool("hla", "hp-over", "", rl("cpu", "1000"), "hla-1"))
		Eventually(healthOf(over)).Should(Equal(health{status.FailedStatus, "Degraded"}))
	})

	It("reads Tickets: redeemed is Current, not yet valid is InProgress, refused is Failed", func() {
		grant := func(jti, slice string, mutate func(*ticket.Claims)) ticket.Claims {
			return sliverGrant(jti, slice, now, func(c *ticket.Claims) {
				c.Sliver.Nodes.Sites = []string{"hla"}
				if mutate != nil {
					mutate(c)
				}
			})
		}
		good := applyTicket("hla", "good", issue(grant("h-1", "plh.x.good", nil)))
		Eventually(healthOf(good)).Should(Equal(health{status.CurrentStatus, "Healthy"}))
		early := applyTicket("hla", "early", issue(grant("h-2", "plh.x.early", func(c *ticket.Claims) { c.NotBefore = now.Add(time.Hour).Unix() })))
		Eventually(healthOf(early)).Should(Equal(health{status.InProgressStatus, "Progressing"}))
		late := applyTicket("hla", "late", issue(grant("h-3", "plh.x.late", func(c *ticket.Claims) {
			c.IssuedAt, c.Expiry = now.Add(-48*time.Hour).Unix(), now.Add(-24*time.Hour).Unix()
		})))
		Eventually(healthOf(late)).Should(Equal(health{status.FailedStatus, "Degraded"}))
	})

	It("reads Authorities: a usable key is Current, no usable key is Failed", func() {
		Eventually(healthOf(&planetv1.Authority{ObjectMeta: metav1.ObjectMeta{Name: "plh"}})).Should(Equal(health{status.CurrentStatus, "Healthy"}))
		other := ticket.NewSigner("plz", testKey("z"))
		broken := create(&planetv1.Authority{
			ObjectMeta: metav1.ObjectMeta{Name: "plz"},
			Spec: planetv1.AuthoritySpec{Keys: []planetv1.AuthorityKey{{
				ID: "0123456789abcdef", PublicKey: ticket.EncodePublicKey(other.Key.Public().(ed25519.PublicKey)),
			}}},
		})
		Eventually(healthOf(broken)).Should(Equal(health{status.FailedStatus, "Degraded"}))
	})
})

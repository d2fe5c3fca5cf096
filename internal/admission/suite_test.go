package admission_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/admission"
	"github.com/planetkube/planetkube/internal/scheme"
	"github.com/planetkube/planetkube/internal/testing/testenv"
	"github.com/planetkube/planetkube/internal/trust"
)

var (
	k8s    client.Client
	ctx    context.Context
	cancel context.CancelFunc
	// cfg is the admin's connection to the API server.
	cfg *rest.Config
	// cached is the manager's cached client, which the webhooks read nodes
	// from.
	cached client.Reader
)

func TestAdmission(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Admission webhooks (envtest)")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	ctx, cancel = context.WithCancel(context.Background())
	env := testenv.New(filepath.Join("..", ".."), testenv.WithWebhooks)
	var err error
	cfg, err = env.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		cancel()
		Expect(env.Stop()).To(Succeed())
	})
	wio := env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:        scheme.Scheme(),
		Metrics:       metricsserver.Options{BindAddress: "0"},
		WebhookServer: webhook.NewServer(webhook.Options{Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir}),
	})
	Expect(err).NotTo(HaveOccurred())
	Expect((&admission.SliceValidator{}).SetupWithManager(mgr)).To(Succeed())
	Expect((&admission.ResourcePoolValidator{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Trust: trust.Policy{Local: "plc"}}).SetupWithManager(mgr)).To(Succeed())
	Expect((&admission.TicketValidator{Reader: mgr.GetClient(), Authority: "plc"}).SetupWithManager(mgr)).To(Succeed())
	cached = mgr.GetClient()
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	k8s, err = client.New(cfg, client.Options{Scheme: scheme.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	// The webhook server is up once a valid slice goes through.
	Eventually(func() error {
		return k8s.Create(ctx, slice("probe", time.Now().Add(time.Hour)))
	}, 30*time.Second, 200*time.Millisecond).Should(Succeed())
})

// slice returns a Slice in namespace default expiring at exp.
func slice(name string, exp time.Time) *planetv1.Slice {
	return &planetv1.Slice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: planetv1.SliceSpec{
			Template:  planetv1.SliverTemplate{Image: "pause"},
			ExpiresAt: &metav1.Time{Time: exp},
		},
	}
}

// refusedWith matches an Invalid error from the API server that says msg
// about spec.expiresAt.
func refusedWith(msg string) OmegaMatcher {
	return And(
		Satisfy(apierrors.IsInvalid),
		MatchError(ContainSubstring("spec.expiresAt")),
		MatchError(ContainSubstring(msg)),
	)
}

var _ = Describe("Slice admission", func() {
	It("refuses an expiry in the past or more than 8 weeks ahead at creation", func() {
		Expect(k8s.Create(ctx, slice("past", time.Now().Add(-time.Minute)))).To(refusedWith("is in the past"))
		Expect(k8s.Create(ctx, slice("far", time.Now().Add(8*7*24*time.Hour+time.Hour)))).To(refusedWith("more than 8 weeks ahead"))
		Expect(k8s.Create(ctx, slice("fine", time.Now().Add(8*7*24*time.Hour-time.Hour)))).To(Succeed())
		Expect(k8s.Create(ctx, &planetv1.Slice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "default-expiry"},
			Spec:       planetv1.SliceSpec{Template: planetv1.SliverTemplate{Image: "pause"}},
		})).To(Succeed())
	})

	It("refuses a renewal past 8 weeks and keeps the object as it was", func() {
		s := slice("renew", time.Now().Add(time.Hour))
		Expect(k8s.Create(ctx, s)).To(Succeed())
		was := s.Spec.ExpiresAt.DeepCopy()

		s.Spec.ExpiresAt = &metav1.Time{Time: time.Now().Add(60 * 24 * time.Hour)}
		Expect(k8s.Update(ctx, s)).To(refusedWith("the latest allowed now is"))
		got := &planetv1.Slice{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(s), got)).To(Succeed())
		Expect(got.Spec.ExpiresAt.Equal(was)).To(BeTrue())

		got.Spec.ExpiresAt = &metav1.Time{Time: time.Now().Add(30 * 24 * time.Hour)}
		Expect(k8s.Update(ctx, got)).To(Succeed())
	})

	It("fails open: with the webhook server unreachable, slices still change and their finalizers can be removed", func() {
		s := slice("unreachable", time.Now().Add(time.Hour))
		s.Finalizers = []string{planetv1.SliceFinalizer}
		Expect(k8s.Create(ctx, s)).To(Succeed())

		By("the manager is down: the slice webhook points at a closed port, as shipped otherwise")
		vwcs := &admissionregv1.ValidatingWebhookConfigurationList{}
		Expect(k8s.List(ctx, vwcs)).To(Succeed())
		var vwc *admissionregv1.ValidatingWebhookConfiguration
		var hook *admissionregv1.ValidatingWebhook
		for i := range vwcs.Items {
			for j := range vwcs.Items[i].Webhooks {
				if vwcs.Items[i].Webhooks[j].Name == "vslice.planetkube.io" {
					vwc, hook = &vwcs.Items[i], &vwcs.Items[i].Webhooks[j]
				}
			}
		}
		Expect(hook).NotTo(BeNil(), "the slice webhook is not installed")
		saved := hook.ClientConfig.DeepCopy()
		dead := "https://127.0.0.1:1/validate-planetkube-io-v1alpha1-slice"
		hook.ClientConfig = admissionregv1.WebhookClientConfig{URL: &dead, CABundle: saved.CABundle}
		Expect(k8s.Update(ctx, vwc)).To(Succeed())
		DeferCleanup(func() {
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(vwc), vwc)).To(Succeed())
			for j := range vwc.Webhooks {
				if vwc.Webhooks[j].Name == "vslice.planetkube.io" {
					vwc.Webhooks[j].ClientConfig = *saved
				}
			}
			Expect(k8s.Update(ctx, vwc)).To(Succeed())
		})

		Eventually(func() error {
			got := &planetv1.Slice{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(s), got); err != nil {
				return err
			}
			got.Finalizers = nil
			return k8s.Update(ctx, got)
		}, 10*time.Second, 200*time.Millisecond).Should(Succeed())
		Expect(k8s.Delete(ctx, s)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(s), &planetv1.Slice{}))
		}).Should(BeTrue())
	})

	It("lets other changes through once the expiry in the spec has passed", func() {
		s := slice("lapsed", time.Now().Add(2*time.Second))
		Expect(k8s.Create(ctx, s)).To(Succeed())
		Eventually(func() bool { return time.Now().After(s.Spec.ExpiresAt.Time) }, 5*time.Second, 100*time.Millisecond).Should(BeTrue())
		s.Spec.Description = "still here, expired"
		Expect(k8s.Update(ctx, s)).To(Succeed())
	})
})

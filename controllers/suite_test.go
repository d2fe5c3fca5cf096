package controllers_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/manager"
	"github.com/planetkube/planetkube/internal/scheme"
	"github.com/planetkube/planetkube/internal/testing/testenv"
)

var (
	testEnv *envtest.Environment
	cfg     *rest.Config
	k8s     client.Client
	ctx     context.Context
	cancel  context.CancelFunc
	// stopManager stops the running manager and waits for it to return.
	stopManager func()
	// writes counts the manager's writes (see countWrites).
	writes writeLog
)

// Settings of the suite's manager: a failed sliver is replaced at once, then
// after 6 s, 12 s, 12 s ... (short, so that a test sees the back-off pass);
// the resync period is short so that a test can wait one out.
const (
	managerNamespace   = "planetkube-system"
	authorityKeySecret = "planetkube-authority-key"
	testSliverBackoff  = 6 * time.Second
	testSyncPeriod     = 5 * time.Second
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controllers (envtest)")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	ctx, cancel = context.WithCancel(context.Background())

	testEnv = testenv.New("..", testenv.WithoutWebhooks)
	Expect(filepath.Join(testEnv.BinaryAssetsDirectory, "kube-apiserver")).To(BeAnExistingFile(), "run `make tools` to build the control plane into bin/")
	var err error
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	cfg.QPS, cfg.Burst = 500, 1000

	k8s, err = client.New(cfg, client.Options{Scheme: scheme.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}})).To(Succeed())

	startManager()
})

// startManager starts the manager of PlanetKube's controllers, as the
// manager binary wires them (with the suite's options, changed by change),
// with a client that counts its writes.
func startManager(change ...func(*manager.Options)) {
	GinkgoHelper()
	cache := manager.CacheOptions()
	cache.SyncPeriod = ptr.To(testSyncPeriod)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme.Scheme(),
		Cache:   cache,
		Metrics: metricsserver.Options{BindAddress: "0"},
		NewClient: func(config *rest.Config, options client.Options) (client.Client, error) {
			c, err := client.NewWithWatch(config, options)
			return countWrites(c, &writes), err
		},
		// A restarted manager registers its controllers again.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	Expect(err).NotTo(HaveOccurred())
	opts := manager.Options{
		Authority: "plc", Namespace: managerNamespace, AuthorityKeySecret: authorityKeySecret, SliverWriters: 16, SharesPerNode: 100, SliceWorkers: 2,
		SliverBackoff: testSliverBackoff, SliverBackoffMax: 2 * testSliverBackoff,
	}
	for _, c := range change {
		c(&opts)
	}
	Expect(manager.Setup(mgr, opts)).To(Succeed())
	// The ResourcePool controller is part of Setup; the webhooks are not
	// (internal/admission tests them), so the controllers' own checks show.
	Expect(ctrl.NewControllerManagedBy(mgr).Named("fake-kubelet").For(&corev1.Pod{}).Complete(podFinalizer{mgr.GetClient()})).To(Succeed())
	mctx, mcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(mctx)).To(Succeed())
	}()
	stopManager = func() {
		mcancel()
		<-done
	}
}

var _ = AfterSuite(func() {
	if stopManager != nil {
		stopManager()
	}
	cancel()
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// podFinalizer stands in for the kubelet, which envtest does not run: it
// ends the graceful deletion of a pod, as a kubelet does once the containers
// stop. Without it, a deleted sliver would stay Terminating for ever.
type podFinalizer struct{ client.Client }

func (f podFinalizer) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	p := &corev1.Pod{}
	if err := f.Get(ctx, req.NamespacedName, p); err != nil || p.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, client.IgnoreNotFound(f.Delete(ctx, p, client.GracePeriodSeconds(0), client.Preconditions{UID: &p.UID}))
}

// makeNode creates a Ready node of a site, with the given labels.
func makeNode(name, site string, extra map[string]string) *corev1.Node {
	GinkgoHelper()
	labels := map[string]string{planetv1.LabelSite: site}
	for k, v := range extra {
		labels[k] = v
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	Expect(k8s.Create(ctx, n)).To(Succeed())
	setNodeReady(n, corev1.ConditionTrue)
	return n
}

// setNodeReady sets the node's Ready condition and allocatable CPU.
func setNodeReady(n *corev1.Node, status corev1.ConditionStatus) {
	GinkgoHelper()
	Expect(k8s.Get(ctx, client.ObjectKeyFromObject(n), n)).To(Succeed())
	reason := "KubeletReady"
	if status != corev1.ConditionTrue {
		reason = "KubeletStopped"
	}
	n.Status.Allocatable = corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"), corev1.ResourcePods: resource.MustParse("110"),
	}
	n.Status.Capacity = n.Status.Allocatable
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, Reason: reason, Message: "set by the test"}}
	Expect(k8s.Status().Update(ctx, n)).To(Succeed())
}

// deleteNode deletes a node.
func deleteNode(name string) {
	GinkgoHelper()
	Expect(k8s.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
}

// updateSpec reads obj at key, applies change and writes it, again on a
// conflict: the controllers write the same objects (status, finalizers).
func updateSpec(key client.ObjectKey, obj client.Object, change func()) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx, key, obj); err != nil {
			return err
		}
		change()
		return k8s.Update(ctx, obj)
	})
}

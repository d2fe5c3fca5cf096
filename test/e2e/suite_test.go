// Package e2e tests PlanetKube end to end on the emulated cluster that
// `make run` starts: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and kwok fake nodes, with the manager binary running as its
// own ServiceAccount.
package e2e

import (
	"context"
	"maps"
	"os"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/scheme"
	"github.com/planetkube/planetkube/internal/testing/emulator"
)

// nodeCount is the size of the emulated cluster: large enough for the
// restart test's 200-node rollout.
const nodeCount = 200

var (
	cluster *emulator.Cluster
	mgr     *emulator.Process
	k8s     client.Client
	ctx     context.Context
	cancel  context.CancelFunc
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "PlanetKube e2e (emulated cluster)")
}

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(60 * time.Second)
	SetDefaultEventuallyPollingInterval(200 * time.Millisecond)
	ctx, cancel = context.WithCancel(context.Background())
	bin, err := emulator.FindBinDir()
	Expect(err).NotTo(HaveOccurred())
	Expect(emulator.CheckBinaries(bin)).To(Succeed(), "run `make tools build` first")

	cluster, err = emulator.Start(ctx, emulator.Options{BinDir: bin, Nodes: nodeCount, Log: GinkgoWriter})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		if CurrentSpecReport().Failed() || os.Getenv("E2E_KEEP_LOGS") != "" {
			GinkgoWriter.Printf("Manager log tail:\n%s\n", mgr.LogTail(40))
		}
		cancel()
		Expect(cluster.Stop()).To(Succeed())
	})
	Expect(cluster.InstallPlanetKube(ctx)).To(Succeed())
	k8s, err = client.New(cluster.Config, client.Options{Scheme: scheme.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	mgr, err = cluster.StartPlanetKube(ctx)
	Expect(err).NotTo(HaveOccurred())

	for _, s := range cluster.Sites {
		Expect(k8s.Create(ctx, &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: s}, Spec: planetv1.SiteSpec{DisplayName: "Site " + s}})).To(Succeed())
		Eventually(func() error { return k8s.Get(ctx, client.ObjectKey{Name: s}, &corev1.Namespace{}) }).Should(Succeed())
	}
})

// asUser returns a client that impersonates a user.
func asUser(name string) client.Client {
	GinkgoHelper()
	cfg := rest.CopyConfig(cluster.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: name}
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	return c
}

// reservedHashAnnotation is the sliver annotation naming its reservation
// (a sliver with one is named naming.ReservedSliverName).
const reservedHashAnnotation = "planetkube.io/reserved-hash"

// slivers returns, for the slice's live slivers, node name by pod name, the
// name each should have by its reservation, and the nodes whose sliver is
// Running.
func slivers(slice *planetv1.Slice) (byName, wantName map[string]string, running sets.Set[string]) {
	GinkgoHelper()
	pods := &corev1.PodList{}
	Expect(k8s.List(ctx, pods, client.MatchingLabels{planetv1.LabelSlice: slice.Name, planetv1.LabelSite: slice.Namespace})).To(Succeed())
	byName, wantName, running = map[string]string{}, map[string]string{}, sets.New[string]()
	for _, p := range pods.Items {
		Expect(p.Namespace).To(Equal(naming.SliceNamespace(slice.Namespace, slice.Name)), "a sliver outside the slice namespace")
		if !p.DeletionTimestamp.IsZero() {
			continue
		}
		byName[p.Name] = p.Spec.NodeName
		wantName[naming.ReservedSliverName(slice.Name, p.Spec.NodeName, p.Annotations[reservedHashAnnotation])] = p.Spec.NodeName
		if p.Status.Phase == corev1.PodRunning {
			running.Insert(p.Spec.NodeName)
		}
	}
	return byName, wantName, running
}

// runningOn succeeds when the slice has exactly one Running sliver, with its
// deterministic name, on each of the nodes and none elsewhere.
func runningOn(slice *planetv1.Slice, nodes sets.Set[string]) func(Gomega) {
	return func(g Gomega) {
		byName, wantName, running := slivers(slice)
		g.Expect(byName).To(Equal(wantName), "slivers not named deterministically")
		g.Expect(sets.New(slices.Collect(maps.Values(byName))...)).To(Equal(nodes))
		g.Expect(byName).To(HaveLen(nodes.Len()), "more than one sliver on a node")
		g.Expect(sets.List(running)).To(Equal(sets.List(nodes)))
	}
}

// nodesOf returns the names of the cluster's nodes of these sites; with no
// site, of every PlanetKube node (one with a site label).
func nodesOf(sites ...string) sets.Set[string] {
	GinkgoHelper()
	nodes := &corev1.NodeList{}
	Expect(k8s.List(ctx, nodes)).To(Succeed())
	want := sets.New(sites...)
	out := sets.New[string]()
	for _, n := range nodes.Items {
		if s := n.Labels[planetv1.LabelSite]; s != "" && (len(sites) == 0 || want.Has(s)) {
			out.Insert(n.Name)
		}
	}
	return out
}

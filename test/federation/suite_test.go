// Package federation tests PlanetKube's federation end to end: two
// independent installs (plc and ple), each its own emulated cluster (etcd,
// kube-apiserver, kwok nodes), manager and authority key, sharing slices by
// push (tickets applied through a peer's kubeconfig) and by pull (each
// polls the other's feed), and recovering a wiped install from the feed.
package federation

import (
	"context"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/scheme"
	"github.com/planetkube/planetkube/internal/testing/emulator"
	"github.com/planetkube/planetkube/internal/ticket"
)

// pollSeconds is the peers' poll interval in these tests (the CRD's
// minimum): a poll comes every 10 to 16 s.
const pollSeconds = 10

// install is one PlanetKube install: its cluster, manager and authority.
type install struct {
	name  string
	sites []string
	// trust is, per site, the authorities it trusts (unset: the default).
	trust   map[string][]string
	key     ed25519.PrivateKey
	cluster *emulator.Cluster
	mgr     *emulator.Process
	k8s     client.Client
}

var (
	ctx    context.Context
	cancel context.CancelFunc
	plc    = &install{name: "plc", sites: []string{"princeton", "mit"}, key: seedKey("p")}
	ple    = &install{
		name: "ple", sites: []string{"inria", "upmc"}, key: seedKey("e"),
		// inria takes plc's slices; upmc trusts its own authority only.
		trust: map[string][]string{"inria": {"ple", "plc"}},
	}
)

func seedKey(s string) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed([]byte(strings.Repeat(s, ed25519.SeedSize)))
}

func TestFederation(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "PlanetKube federation (two emulated installs)")
}

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(60 * time.Second)
	SetDefaultEventuallyPollingInterval(250 * time.Millisecond)
	ctx, cancel = context.WithCancel(context.Background())
	DeferCleanup(func() {
		for _, in := range []*install{plc, ple} {
			if in.cluster == nil {
				continue
			}
			if CurrentSpecReport().Failed() && in.mgr != nil {
				GinkgoWriter.Printf("%s manager log tail:\n%s\n", in.name, in.mgr.LogTail(60))
			}
			Expect(in.cluster.Stop()).To(Succeed())
		}
		cancel()
	})
	for _, in := range []*install{plc, ple} {
		in.start()
	}
})

// start starts the install's cluster (the suite's cleanup stops it) (6 nodes per site), installs
// PlanetKube with the install's authority key (as its Helm release would
// bring it), starts the manager with its feed, and makes its sites.
func (in *install) start() {
	GinkgoHelper()
	bin, err := emulator.FindBinDir()
	Expect(err).NotTo(HaveOccurred())
	Expect(emulator.CheckBinaries(bin)).To(Succeed(), "run `make tools build` first")
	in.cluster, err = emulator.Start(ctx, emulator.Options{BinDir: bin, Nodes: 6 * len(in.sites), Sites: in.sites, Log: GinkgoWriter})
	Expect(err).NotTo(HaveOccurred())
	c := in.cluster
	Expect(c.InstallPlanetKube(ctx)).To(Succeed())
	Expect(c.PutAuthorityKey(ctx, in.name, in.key)).To(Succeed())
	in.k8s, err = client.New(c.Config, client.Options{Scheme: scheme.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	in.startManager()
	for _, s := range in.sites {
		Expect(in.k8s.Create(ctx, &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: s}, Spec: planetv1.SiteSpec{TrustedAuthorities: in.trust[s]}})).To(Succeed())
		Eventually(func() error { return in.k8s.Get(ctx, client.ObjectKey{Name: s}, &corev1.Namespace{}) }).Should(Succeed())
	}
}

// startManager starts the install's manager with its feed.
func (in *install) startManager() {
	GinkgoHelper()
	args, err := in.cluster.FeedArgs()
	Expect(err).NotTo(HaveOccurred())
	in.mgr, err = in.cluster.StartPlanetKube(ctx, append(args, "--authority="+in.name, "--feed-timeout=3s")...)
	Expect(err).NotTo(HaveOccurred())
}

// signer is the install's signer (the test holds its key, to play a
// hostile home).
func (in *install) signer() ticket.Signer { return ticket.NewSigner(in.name, in.key) }

// authorityOf returns the Authority by which other knows in: its key, its
// feed (with its CA) polled every pollSeconds.
func (in *install) authorityOf() *planetv1.Authority {
	GinkgoHelper()
	_, _, ca, err := in.cluster.FeedServing()
	Expect(err).NotTo(HaveOccurred())
	return &planetv1.Authority{
		ObjectMeta: metav1.ObjectMeta{Name: in.name},
		Spec: planetv1.AuthoritySpec{
			Keys:                []planetv1.AuthorityKey{{ID: in.signer().KeyID, PublicKey: ticket.EncodePublicKey(in.key.Public().(ed25519.PublicKey))}},
			FeedURL:             in.cluster.FeedURL(),
			FeedCABundle:        string(ca),
			PollIntervalSeconds: pollSeconds,
		},
	}
}

// nodes returns the install's nodes of these sites.
func (in *install) nodes(sites ...string) sets.Set[string] {
	GinkgoHelper()
	list := &corev1.NodeList{}
	Expect(in.k8s.List(ctx, list)).To(Succeed())
	want := sets.New(sites...)
	out := sets.New[string]()
	for _, n := range list.Items {
		if want.Has(n.Labels[planetv1.LabelSite]) {
			out.Insert(n.Name)
		}
	}
	return out
}

// runningIn returns the nodes with a Running pod in a namespace.
func (in *install) runningIn(ns string) func() sets.Set[string] {
	return func() sets.Set[string] {
		pods := &corev1.PodList{}
		if err := in.k8s.List(ctx, pods, client.InNamespace(ns)); err != nil {
			return nil
		}
		out := sets.New[string]()
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp.IsZero() {
				out.Insert(p.Spec.NodeName)
			}
		}
		return out
	}
}

package bench

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/testing/emulator"
)

const (
	federationHeading = "## Federation (issue 11)"
	// fedPairs is how many times the three rollouts alternate.
	fedPairs = 3
	// fedPollSeconds is the peers' poll interval for the rollouts (the
	// CRD's minimum), recoveryPollSeconds for the recovery.
	fedPollSeconds, recoveryPollSeconds = 10, 60
	// recoverySlices is how many foreign slices a wiped install gets back,
	// each of recoverySlivers slivers there.
	recoverySlices, recoverySlivers = 100, 5
)

// benchInstall is one install of the federation benchmark.
type benchInstall struct {
	name    string
	sites   []string
	key     ed25519.PrivateKey
	cluster *emulator.Cluster
	k8s     client.Client
	mgr     *emulator.Process
}

// startBenchInstall starts an install: its cluster (n nodes over sites, in
// a work folder of its own), PlanetKube with its key, its manager serving
// its feed, and its Sites (trusting plc and ple).
func startBenchInstall(ctx context.Context, t *testing.T, binDir, name string, key ed25519.PrivateKey, n int, sites []string) *benchInstall {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "planetkube-bench-"+name)
	c, err := emulator.Start(ctx, emulator.Options{BinDir: binDir, WorkDir: dir, Nodes: n, Sites: sites, Log: testWriter{t}})
	if err != nil {
		t.Fatalf("Starting %s's cluster: %v", name, err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	in := &benchInstall{name: name, sites: sites, key: key, cluster: c}
	if err := c.InstallPlanetKube(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.PutAuthorityKey(ctx, name, key); err != nil {
		t.Fatal(err)
	}
	if in.k8s, err = newClient(c.Config); err != nil {
		t.Fatal(err)
	}
	for _, s := range sites {
		site := &planetv1.Site{}
		site.Name, site.Spec.TrustedAuthorities = s, []string{"plc", "ple"}
		if err := in.k8s.Create(ctx, site); err != nil {
			t.Fatal(err)
		}
	}
	return in
}

// startManager starts the install's manager with its feed.
func (in *benchInstall) startManager(ctx context.Context, t *testing.T) {
	t.Helper()
	args, err := in.cluster.FeedArgs()
	if err != nil {
		t.Fatal(err)
	}
	if in.mgr, err = in.cluster.StartPlanetKube(ctx, append(args, "--authority="+in.name, "--metrics-secure=false")...); err != nil {
		t.Fatalf("Starting %s's manager: %v", in.name, err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := in.cluster.Client.CoreV1().Namespaces().Get(ctx, in.sites[0], metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		t.Fatalf("%s: site namespaces not made: %v", in.name, err)
	}
}

// fedResult holds the federation benchmark's figures.
type fedResult struct {
	nodes                 int
	single, push, pull    []time.Duration
	pushRatio, pullRatio  []float64
	recovery              time.Duration
	recoveryPoll          time.Duration
	recoveredSlices, pods int
	machine               machine
}

// TestFederationBench measures, on two installs (plc with N nodes over
// sites fa and fb, ple with N/2 nodes on site fe), the time to all Running
// of a slice of N slivers: on plc alone (the anchor: all plc's nodes), and
// spanning both (N/2 on plc's fa, N/2 on ple's fe) by push and by pull, the
// three alternating over fedPairs; then the recovery of ple, wiped and
// reinstalled, getting back recoverySlices foreign slices from plc's feed,
// against one poll interval.
func TestFederationBench(t *testing.T) {
	if *benchOut == "" {
		t.Skip("Skipping the benchmarks: no -bench-out file given (run `make bench`)")
	}
	binDir := findBinDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	n := *benchNodes
	plcKey, pleKey := ed25519.NewKeyFromSeed([]byte(strings.Repeat("p", 32))), ed25519.NewKeyFromSeed([]byte(strings.Repeat("e", 32)))
	plc := startBenchInstall(ctx, t, binDir, "plc", plcKey, n, []string{"fa", "fb"})
	ple := startBenchInstall(ctx, t, binDir, "ple", pleKey, n/2, []string{"fe"})
	for _, p := range [][2]*benchInstall{{plc, ple}, {ple, plc}} {
		if err := p[0].cluster.Peer(ctx, p[0].name, p[1].cluster, p[1].name, p[1].key.Public().(ed25519.PublicKey),
			emulator.PeerOptions{Push: true, Pull: true, PollSeconds: fedPollSeconds}); err != nil {
			t.Fatal(err)
		}
	}
	plc.startManager(ctx, t)
	ple.startManager(ctx, t)

	res := &fedResult{nodes: n, machine: describeMachine()}
	for pair := range fedPairs {
		order := []string{"single", "push", "pull"}
		if pair%2 == 1 {
			order = []string{"pull", "push", "single"}
		}
		var got = map[string]time.Duration{}
		for _, side := range order {
			d, err := fedRollout(ctx, t, plc, ple, side, fmt.Sprintf("%s-%d", side, pair), n)
			if err != nil {
				t.Fatal(err)
			}
			got[side] = d
		}
		res.single, res.push, res.pull = append(res.single, got["single"]), append(res.push, got["push"]), append(res.pull, got["pull"])
		res.pushRatio = append(res.pushRatio, got["push"].Seconds()/got["single"].Seconds())
		res.pullRatio = append(res.pullRatio, got["pull"].Seconds()/got["single"].Seconds())
	}
	reportManagerErrors(t, plc.mgr)
	reportManagerErrors(t, ple.mgr)
	if err := fedRecovery(ctx, t, binDir, plc, ple, res); err != nil {
		t.Fatal(err)
	}
	if err := writeSection(*benchOut, federationHeading, res.markdown()); err != nil {
		t.Fatalf("Writing %s: %v", *benchOut, err)
	}
	t.Logf("Wrote %s:\n%s", *benchOut, res.markdown())
}

// setMode makes plc reach ple by push only or by pull only.
func setMode(ctx context.Context, plc, ple *benchInstall, push bool) error {
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		a := &planetv1.Authority{}
		if err := plc.k8s.Get(ctx, client.ObjectKey{Name: "ple"}, a); err != nil {
			return err
		}
		a.Spec.Push = nil
		if push {
			a.Spec.Push = &planetv1.AuthorityPush{SecretName: "peer-ple"}
		}
		return plc.k8s.Update(ctx, a)
	}); err != nil {
		return err
	}
	_, _, ca, err := plc.cluster.FeedServing()
	if err != nil {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		a := &planetv1.Authority{}
		if err := ple.k8s.Get(ctx, client.ObjectKey{Name: "plc"}, a); err != nil {
			return err
		}
		a.Spec.FeedURL, a.Spec.FeedCABundle = "", ""
		if !push {
			a.Spec.FeedURL, a.Spec.FeedCABundle = plc.cluster.FeedURL(), string(ca)
		}
		return ple.k8s.Update(ctx, a)
	})
}

// fedRollout creates one slice of n slivers (side single: on plc's n
// nodes; push or pull: on plc's site fa and ple's site fe) and returns the
// time from its creation to all its slivers Running, then deletes it and
// waits for its slivers to go.
func fedRollout(ctx context.Context, t *testing.T, plc, ple *benchInstall, side, name string, n int) (time.Duration, error) {
	t.Helper()
	s := &planetv1.Slice{}
	s.Namespace, s.Name = "fa", name
	s.Spec.Template = planetv1.SliverTemplate{Image: pauseImage}
	type watched struct {
		cs        kubernetes.Interface
		namespace string
		want      int
	}
	local := watched{plc.cluster.Client, naming.SliceNamespace("fa", name), n}
	targets := []watched{local}
	if side != "single" {
		if err := setMode(ctx, plc, ple, side == "push"); err != nil {
			return 0, err
		}
		s.Spec.Nodes.Sites = []string{"fa", "fe"}
		s.Spec.Nodes.Authorities = []string{"ple"}
		local.want = n / 2
		targets = []watched{local, {ple.cluster.Client, naming.ForeignSliceNamespace("plc", "fa", name), n / 2}}
	}
	ctx, cancel := context.WithTimeout(ctx, phaseTimeout)
	defer cancel()
	trackers := make([]*tracker, len(targets))
	for i, w := range targets {
		trackers[i] = newTracker(w.want, nil)
		inf := podInformer(w.cs, w.namespace, planetv1.LabelSlice, trackers[i])
		go inf.RunWithContext(ctx)
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			return 0, fmt.Errorf("%s: watch of %s did not sync", name, w.namespace)
		}
	}
	for _, tr := range trackers {
		tr.begin()
	}
	if err := plc.k8s.Create(ctx, s); err != nil {
		return 0, err
	}
	var took time.Duration
	for i, tr := range trackers {
		tm, err := waitDone(ctx, t, fmt.Sprintf("%s (%s)", name, targets[i].namespace), tr)
		if err != nil {
			return 0, err
		}
		took = max(took, tm.running)
	}
	t.Logf("%s: %d slivers Running in %s", name, n, took.Round(time.Millisecond))
	if err := plc.k8s.Delete(ctx, s); err != nil {
		return 0, err
	}
	for _, w := range targets {
		if err := waitNoPods(ctx, w.cs, w.namespace); err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
	}
	return took, nil
}

// waitNoPods waits until namespace has no pods.
func waitNoPods(ctx context.Context, cs kubernetes.Interface, namespace string) error {
	return wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, phaseTimeout, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
		return err == nil && len(pods.Items) == 0, nil
	})
}

// fedRecovery gives ple recoverySlices foreign slices by pull, wipes ple
// (its cluster goes, etcd and all; a new one is installed with the same
// key, as its Helm release would) and measures the time from its new
// manager's start to every foreign sliver Running again.
func fedRecovery(ctx context.Context, t *testing.T, binDir string, plc, ple *benchInstall, res *fedResult) error {
	t.Helper()
	if err := setMode(ctx, plc, ple, false); err != nil {
		return err
	}
	for i := range recoverySlices {
		s := &planetv1.Slice{}
		s.Namespace, s.Name = "fa", fmt.Sprintf("soft-%03d", i)
		s.Spec.Template = planetv1.SliverTemplate{Image: pauseImage}
		s.Spec.Nodes.Sites, s.Spec.Nodes.Authorities, s.Spec.Nodes.MaxNodes = []string{"fa", "fe"}, []string{"ple"}, ptr.To[int32](recoverySlivers)
		if err := plc.k8s.Create(ctx, s); err != nil {
			return err
		}
	}
	want := recoverySlices * recoverySlivers
	if err := waitRunningAll(ctx, ple.cluster.Client, want); err != nil {
		return fmt.Errorf("before the wipe: %w", err)
	}
	t.Logf("ple runs %d foreign slivers of %d slices; wiping it", want, recoverySlices)
	if err := ple.cluster.Stop(); err != nil {
		return err
	}
	nodes := len(ple.cluster.NodeNames)
	fresh := startBenchInstall(ctx, t, binDir, "ple", ple.key, nodes, []string{"fe"})
	if err := fresh.cluster.Peer(ctx, "ple", plc.cluster, "plc", plc.key.Public().(ed25519.PublicKey),
		emulator.PeerOptions{Pull: true, PollSeconds: recoveryPollSeconds}); err != nil {
		return err
	}
	tm, err := measure(ctx, t, fresh.cluster.Client, phase{name: "Recovery", selector: planetv1.LabelSlice, start: func(ctx context.Context) error {
		fresh.startManager(ctx, t)
		return nil
	}}, want, phaseTimeout)
	if err != nil {
		return err
	}
	res.recovery, res.recoveryPoll, res.recoveredSlices, res.pods = tm.running, recoveryPollSeconds*time.Second, recoverySlices, want
	reportManagerErrors(t, fresh.mgr)
	return nil
}

// waitRunningAll waits until the cluster has want Running slivers.
func waitRunningAll(ctx context.Context, cs kubernetes.Interface, want int) error {
	return wait.PollUntilContextTimeout(ctx, time.Second, phaseTimeout, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: planetv1.LabelSlice})
		if err != nil {
			return false, nil
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == "Running" {
				running++
			}
		}
		return running == want, nil
	})
}

// markdown returns the body of the federation section.
func (r *fedResult) markdown() string {
	var b strings.Builder
	m := r.machine
	fmt.Fprintf(&b, "Command: `make bench` (alone: `go test ./test/bench/ -run TestFederationBench -v -timeout 60m -args -bench-out=$PWD/docs/benchmarks.md`). "+
		"Date: %s. Machine: %d CPUs (%s), Linux %s, %s. Two installs on loopback, each its own etcd, kube-apiserver, kwok nodes and manager: plc with %d nodes (sites fa and fb), ple with %d (site fe).\n\n",
		m.date.Format("2006-01-02 15:04 MST"), m.cpus, m.cpuModel, m.kernel, m.goVersion, r.nodes, r.nodes/2)
	fmt.Fprintf(&b, "**A %d-sliver slice, from its creation at plc to all slivers Running**: on plc alone (the anchor: all %d of plc's nodes), and spanning both installs (%d on plc's fa, %d on ple's fe) by push (the ticket applied at ple through its kubeconfig) and by pull (ple polls plc's feed every %d s plus up to %d s, so the figure includes the wait for the next poll). The three alternate over %d pairs (the order reverses every other pair); each starts on emptied clusters.\n\n",
		r.nodes, r.nodes, r.nodes/2, r.nodes/2, fedPollSeconds, fedPollSeconds/2+1, len(r.single))
	b.WriteString("| Pair | Single install | Push | Pull | Push / single | Pull / single |\n|---|---|---|---|---|---|\n")
	for i := range r.single {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %.2f× | %.2f× |\n", i+1, seconds(r.single[i]), seconds(r.push[i]), seconds(r.pull[i]), r.pushRatio[i], r.pullRatio[i])
	}
	pm, plo, phi := medianRange(r.pushRatio)
	lm, llo, lhi := medianRange(r.pullRatio)
	fmt.Fprintf(&b, "\nMedian push / single **%.2f×** (%.2f×–%.2f×); median pull / single **%.2f×** (%.2f×–%.2f×).\n\n", pm, plo, phi, lm, llo, lhi)
	fmt.Fprintf(&b, "**Recovery of a wiped install**: ple runs %d foreign slices of plc (%d slivers), pulled; its cluster is stopped (etcd and all) and a new one of the same size installed with the same authority key and its Authority for plc (poll interval %s). From the new manager's start to all %d slivers Running again: **%s**, %.2f× one poll interval (target: within one). The first poll comes at once (a new Authority has no poll time yet), so recovery costs the redemption of %d tickets and the rollout, not the interval.\n",
		r.recoveredSlices, r.pods, r.recoveryPoll, r.pods, seconds(r.recovery), r.recovery.Seconds()/r.recoveryPoll.Seconds(), r.recoveredSlices)
	return b.String()
}

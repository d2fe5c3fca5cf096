package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/scheme"
	"github.com/planetkube/planetkube/internal/testing/emulator"
	"github.com/planetkube/planetkube/internal/testing/poll"
	"github.com/planetkube/planetkube/internal/testing/realnode"
	"github.com/planetkube/planetkube/internal/testing/skiplog"
)

const (
	realNodeHeading = "## Real node: sliver start and the agent's cost (issue 27)"
	// realNodePairs alternations of a slice's sliver and a bare pod.
	realNodePairs = 7
	// realNodeStartTarget: a sliver may take this many times a bare pod.
	realNodeStartTarget = 1.2
	// agentSlivers send traffic while the agent is measured over
	// agentWindows windows of agentWindow each.
	agentSlivers = 20
	agentWindow  = 60 * time.Second
	agentWindows = 3
	// agentCPUTarget (fraction of one core) and agentRSSTarget (bytes).
	agentCPUTarget = 0.02
	agentRSSTarget = 100 << 20
)

type realNodeResult struct {
	sliver, bare []time.Duration // created → Running, per pair; bare as kubectl run makes it (bareDefault)
	bareNoVolume []time.Duration // the same, for a bare pod with no volume at all (bareNoVolume)
	bareKeys     []time.Duration // the same, for a bare pod with a sliver's Secret volume (bareSecret)
	sliverPod    []time.Duration // the Slice created → its pod first seen
	agentCPU     []float64       // cores, over each agentWindow
	agentRSS     int64           // bytes, at the end of the window
	flows        []int           // flows the slivers opened in each window
	machine      machine
}

// TestRealNodeBench measures, on a real node with the chart installed as
// make run does: the time from a Slice's creation (one sliver, on the real
// node) to its sliver Running, against a bare pod of the same image placed
// on the same node by the scheduler (nodeSelector), as kubectl run makes
// it, alternated over realNodePairs, each pair's objects deleted before
// the next; beside each pair, a bare pod with no volume and one with a
// Secret volume as a sliver's keys (what a volume costs); then the node
// agent's CPU (its pod's cpuacct over agentWindow) and RSS with
// agentSlivers slivers each opening a TCP flow a second to the node's
// internet namespace.
func TestRealNodeBench(t *testing.T) {
	if *benchOut == "" {
		t.Skip("Skipping the benchmarks: no -bench-out file given (run `make bench`)")
	}
	binDir := findBinDir(t)
	if err := realnode.Check(binDir); err != nil {
		skiplog.UnlessRoot(t, "The real-node benchmark needs a real node: "+err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	c, err := emulator.Start(ctx, emulator.Options{BinDir: binDir, Nodes: -1, RealNodes: true, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	site, err := realnode.InstallSite(ctx, c, realnode.SiteOptions{Log: testWriter{t}})
	if site != nil {
		t.Cleanup(func() { _ = site.Nodes.Stop() })
	}
	if err != nil {
		t.Fatal(err)
	}
	k8s, err := client.New(c.Config, client.Options{Scheme: scheme.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	// Room for the talkers (a site's default limit is PlanetLab's 10 slices).
	if err := k8s.Create(ctx, &planetv1.Site{ObjectMeta: metav1.ObjectMeta{Name: "princeton"}, Spec: planetv1.SiteSpec{MaxSlices: ptr.To[int32](agentSlivers + 2)}}); err != nil {
		t.Fatal(err)
	}
	if err := createNamespace(ctx, c.Client, "bare"); err != nil {
		t.Fatal(err)
	}
	// The bare pod as kubectl run makes it mounts its namespace's default
	// ServiceAccount's token (the service account admission adds it).
	poll.Until(t, "the bare namespace's default ServiceAccount", time.Minute, 100*time.Millisecond, func() error {
		return k8s.Get(ctx, client.ObjectKey{Namespace: "bare", Name: "default"}, &corev1.ServiceAccount{})
	})
	poll.Until(t, "the site's namespace", time.Minute, 100*time.Millisecond, func() error {
		return k8s.Get(ctx, client.ObjectKey{Name: "princeton"}, &corev1.Namespace{})
	})
	res := &realNodeResult{machine: describeMachine()}
	node := site.Node
	for i := range realNodePairs {
		// Alternate which side goes first.
		keys := barePodStart(ctx, t, k8s, node, fmt.Sprintf("keys-%d", i), bareSecret)
		noVolume := barePodStart(ctx, t, k8s, node, fmt.Sprintf("novolume-%d", i), bareNoVolume)
		res.bareKeys, res.bareNoVolume = append(res.bareKeys, keys), append(res.bareNoVolume, noVolume)
		sides := []func() time.Duration{
			func() time.Duration {
				d, seen := sliverStart(ctx, t, k8s, node, fmt.Sprintf("start-%d", i))
				res.sliverPod = append(res.sliverPod, seen)
				return d
			},
			func() time.Duration { return barePodStart(ctx, t, k8s, node, fmt.Sprintf("bare-%d", i), bareDefault) },
		}
		if i%2 == 1 {
			slices.Reverse(sides)
		}
		a, b := sides[0](), sides[1]()
		if i%2 == 1 {
			a, b = b, a
		}
		res.sliver, res.bare = append(res.sliver, a), append(res.bare, b)
		t.Logf("Pair %d: sliver %s (its pod made after %s), bare pod %s; with no volume %s, with a Secret volume %s",
			i, a.Round(time.Millisecond), res.sliverPod[i].Round(time.Millisecond), b.Round(time.Millisecond), noVolume.Round(time.Millisecond), keys.Round(time.Millisecond))
	}

	measureAgent(ctx, t, k8s, site, res)
	if err := writeSection(*benchOut, realNodeHeading, res.markdown()); err != nil {
		t.Fatal(err)
	}
}

// sliverStart creates a slice with one sliver on the real node and returns
// the time to it Running and to its pod first seen; then deletes the slice
// and waits for its pod to go.
func sliverStart(ctx context.Context, t *testing.T, k8s client.Client, node *realnode.Node, name string) (time.Duration, time.Duration) {
	t.Helper()
	s := &planetv1.Slice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "princeton", Name: name},
		Spec: planetv1.SliceSpec{
			Nodes:    planetv1.SliceNodes{NodeSelection: planetv1.NodeSelection{Names: []string{node.Name}}},
			Template: planetv1.SliverTemplate{Image: realnode.WorkloadImage, Args: []string{"pause"}},
		},
	}
	began := time.Now()
	if err := k8s.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	sel := client.MatchingLabels{planetv1.LabelSlice: name}
	waitPods(ctx, t, k8s, sel, "made", 10*time.Millisecond, func(pods []corev1.Pod) bool { return len(pods) > 0 })
	seen := time.Since(began)
	waitPods(ctx, t, k8s, sel, "Running", 20*time.Millisecond, anyRunning)
	took := time.Since(began)
	if err := k8s.Delete(ctx, s); err != nil {
		t.Fatal(err)
	}
	waitPods(ctx, t, k8s, sel, "gone", 100*time.Millisecond, func(pods []corev1.Pod) bool { return len(pods) == 0 })
	return took, seen
}

// barePod is how a bare pod of the benchmark is made.
type barePod int

const (
	// bareDefault: as kubectl run makes it, with Kubernetes' defaults: its
	// namespace's default ServiceAccount token mounted (one projected
	// volume, as a sliver has one Secret volume for its keys).
	bareDefault barePod = iota
	// bareNoVolume: no ServiceAccount token, no volume at all.
	bareNoVolume
	// bareSecret: no token, a Secret mounted as a sliver mounts its users'
	// keys.
	bareSecret
)

// barePodStart creates a pod of the same image that the scheduler puts on
// the real node and returns the time to it Running; then deletes it.
func barePodStart(ctx context.Context, t *testing.T, k8s client.Client, node *realnode.Node, name string, kind barePod) time.Duration {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bare", Name: name, Labels: map[string]string{"bench": name}},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{corev1.LabelHostname: node.Name},
			Containers: []corev1.Container{{
				Name: "sliver", Image: realnode.WorkloadImage, Args: []string{"pause"},
			}},
		},
	}
	if kind != bareDefault {
		pod.Spec.AutomountServiceAccountToken = ptr.To(false)
	}
	if kind == bareSecret {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "bare", Name: "keys"}, StringData: map[string]string{"authorized_keys": "ssh-ed25519 AAAA bench"}}
		if err := k8s.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		pod.Spec.Volumes = []corev1.Volume{{Name: "keys", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "keys"}}}}
		pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "keys", MountPath: "/etc/planetkube/ssh", ReadOnly: true}}
	}
	began := time.Now()
	if err := k8s.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if kind == bareDefault && (len(pod.Spec.Volumes) != 1 || pod.Spec.Volumes[0].Projected == nil) {
		t.Fatalf("The bare pod as kubectl run makes it has volumes %+v; want its ServiceAccount token's projected volume", pod.Spec.Volumes)
	}
	sel := client.MatchingLabels{"bench": name}
	waitPods(ctx, t, k8s, sel, "Running", 20*time.Millisecond, anyRunning)
	took := time.Since(began)
	if err := k8s.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	waitPods(ctx, t, k8s, sel, "gone", 100*time.Millisecond, func(pods []corev1.Pod) bool { return len(pods) == 0 })
	return took
}

// waitPods polls the pods matching sel every interval until done says
// they are as what says.
func waitPods(ctx context.Context, t *testing.T, k8s client.Client, sel client.MatchingLabels, what string, interval time.Duration, done func([]corev1.Pod) bool) {
	t.Helper()
	poll.Until(t, fmt.Sprintf("pods %v %s", sel, what), 2*time.Minute, interval, func() error {
		list := &corev1.PodList{}
		if err := k8s.List(ctx, list, sel); err != nil {
			return err
		}
		if !done(list.Items) {
			return fmt.Errorf("%d pods, not %s", len(list.Items), what)
		}
		return nil
	})
}

// anyRunning says whether one of pods is Running.
func anyRunning(pods []corev1.Pod) bool {
	return slices.ContainsFunc(pods, func(p corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
}

// measureAgent starts agentSlivers slices on the real node, each opening a
// TCP flow a second to the node's internet, and measures the agent pod's
// CPU over agentWindow and its RSS at the end.
func measureAgent(ctx context.Context, t *testing.T, k8s client.Client, site *realnode.Site, res *realNodeResult) {
	t.Helper()
	node := site.Node
	inet, err := site.ServeInternet()
	if err != nil {
		t.Fatal(err)
	}
	for i := range agentSlivers {
		s := &planetv1.Slice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "princeton", Name: fmt.Sprintf("talker-%02d", i)},
			Spec: planetv1.SliceSpec{
				Nodes: planetv1.SliceNodes{NodeSelection: planetv1.NodeSelection{Names: []string{node.Name}}},
				Template: planetv1.SliverTemplate{Image: realnode.WorkloadImage,
					Args: []string{"tcp-send", "-to", inet.IP + ":9000", "-bytes", "10000", "-every", "1s"}},
			},
		}
		if err := k8s.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	poll.Until(t, fmt.Sprintf("%d talkers Running", agentSlivers), 5*time.Minute, time.Second, func() error {
		list := &corev1.PodList{}
		if err := k8s.List(ctx, list, client.HasLabels{planetv1.LabelSlice}); err != nil {
			return err
		}
		n := 0
		for _, p := range list.Items {
			if strings.HasPrefix(p.Labels[planetv1.LabelSlice], "talker-") && p.Status.Phase == corev1.PodRunning {
				n++
			}
		}
		if n < agentSlivers {
			return fmt.Errorf("%d Running", n)
		}
		return nil
	})
	agent := &corev1.PodList{}
	if err := k8s.List(ctx, agent, client.InNamespace("planetkube-agent")); err != nil || len(agent.Items) != 1 {
		t.Fatalf("The agent pod: %v (%d pods)", err, len(agent.Items))
	}
	pod := agent.Items[0]
	dir := func(h string) string {
		return filepath.Join("/sys/fs/cgroup", h, node.CgroupRoot, "kubepods", strings.ToLower(string(pod.Status.QOSClass)), "pod"+string(pod.UID))
	}
	if pod.Status.QOSClass == corev1.PodQOSGuaranteed {
		dir = func(h string) string {
			return filepath.Join("/sys/fs/cgroup", h, node.CgroupRoot, "kubepods", "pod"+string(pod.UID))
		}
	}
	usage := func() int64 {
		b, err := os.ReadFile(filepath.Join(dir("cpuacct"), "cpuacct.usage"))
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return n
	}
	for range agentWindows {
		served0 := countLines(t, inet)
		u0, began := usage(), time.Now()
		poll.Until(t, "the measurement window", agentWindow+time.Minute, time.Second, func() error {
			if time.Since(began) < agentWindow {
				return fmt.Errorf("%s so far", time.Since(began).Round(time.Second))
			}
			return nil
		})
		res.agentCPU = append(res.agentCPU, float64(usage()-u0)/float64(time.Since(began).Nanoseconds()))
		res.flows = append(res.flows, countLines(t, inet)-served0)
	}
	// The agent's RSS: the sum over its pod's processes (in its
	// containers' cgroups, below the pod's).
	var pids []string
	_ = filepath.WalkDir(dir("memory"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "cgroup.procs" {
			b, _ := os.ReadFile(p)
			pids = append(pids, strings.Fields(string(b))...)
		}
		return nil
	})
	if len(pids) == 0 {
		t.Fatalf("No process in the agent pod's memory cgroup %s", dir("memory"))
	}
	for _, f := range pids {
		status, err := os.ReadFile("/proc/" + f + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				res.agentRSS += kb << 10
			}
		}
	}
	t.Logf("Agent: %.4f of a core in each window, RSS %d MiB, %d flows in each %s", res.agentCPU, res.agentRSS>>20, res.flows, agentWindow)
}

// countLines counts the connections the internet's TCP server closed (one
// log line each).
func countLines(t *testing.T, inet *realnode.Internet) int {
	t.Helper()
	b, err := os.ReadFile(inet.LogPath("tcp-serve"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "bytes from")
}

func (r *realNodeResult) markdown() string {
	var b strings.Builder
	m := r.machine
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "MISS"
	}
	fmt.Fprintf(&b, "Command: `make bench` (`TestRealNodeBench`). Date: %s. Machine: %d CPUs (%s), Linux %s, %s. "+
		"One real node (kubelet, containerd 2, runc, CNI bridge; `internal/testing/realnode`) with the chart installed by helm as `make run` does; "+
		"the manager's two replicas and the node agent run on it.\n\n",
		m.date.Format("2006-01-02 15:04 MST"), m.cpus, m.cpuModel, m.kernel, m.goVersion)
	against := func(anchor []time.Duration) (ratios []float64, median, lo, hi float64) {
		for i := range r.sliver {
			ratios = append(ratios, r.sliver[i].Seconds()/anchor[i].Seconds())
		}
		sorted := slices.Sorted(slices.Values(ratios))
		return ratios, sorted[len(sorted)/2], sorted[0], sorted[len(sorted)-1]
	}
	ratios, median, lo, hi := against(r.bare)
	noVol, noVolMedian, noVolLo, noVolHi := against(r.bareNoVolume)
	keys, keysMedian, keysLo, keysHi := against(r.bareKeys)
	seen := slices.Sorted(slices.Values(r.sliverPod))
	fmt.Fprintf(&b, "**Sliver start.** A Slice created (one sliver, on the real node) → its sliver Running, against a bare pod of the same image "+
		"(`%s`, `pause`) that the scheduler puts on the same node, as `kubectl run` makes it: Kubernetes' defaults, so its namespace's ServiceAccount token is mounted "+
		"(one projected volume; a sliver mounts no token but one Secret, its users' keys at `/etc/planetkube/ssh`). "+
		"%d pairs, the side that goes first alternating, each pair's objects deleted before the next. "+
		"Beside each pair, what a volume costs: a bare pod with no volume at all, and one with no token but a Secret volume as a sliver's:\n\n", realnode.WorkloadImage, len(r.sliver))
	b.WriteString("| pair | sliver | its pod made after | bare pod | ratio | no volume | ratio | a Secret volume | ratio |\n|---|---|---|---|---|---|---|---|---|\n")
	for i := range r.sliver {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %.2f× | %s | %.2f× | %s | %.2f× |\n", i+1, seconds(r.sliver[i]), seconds(r.sliverPod[i]),
			seconds(r.bare[i]), ratios[i], seconds(r.bareNoVolume[i]), noVol[i], seconds(r.bareKeys[i]), keys[i])
	}
	fmt.Fprintf(&b, "\nAgainst the bare pod: median ratio **%.2f×** (range %.2f–%.2f×); target ≤ %.1f×: **%s**. "+
		"Against the bare pod with a Secret volume: median %.2f× (range %.2f–%.2f×). "+
		"Against the bare pod with no volume: median %.2f× (range %.2f–%.2f×): the gap is the kubelet's wait for a pod's volumes, which any pod with a volume pays "+
		"(it checks that they are mounted every 300 ms, `podAttachAndMountRetryInterval` in pkg/kubelet/volumemanager; a pod without volumes does not wait); "+
		"a sliver cannot do without its keys' volume. "+
		"The manager makes the sliver's pod a median %s after the Slice (its namespace, RoleBinding and keys Secret first).\n\n",
		median, lo, hi, realNodeStartTarget, verdict(median <= realNodeStartTarget),
		keysMedian, keysLo, keysHi, noVolMedian, noVolLo, noVolHi, seconds(seen[len(seen)/2]))
	cpu := slices.Sorted(slices.Values(r.agentCPU))
	flows := slices.Sorted(slices.Values(r.flows))
	fmt.Fprintf(&b, "**The agent's cost.** %d slivers on the node, each opening a TCP flow a second to the node's internet namespace (a median %d flows in each of %d windows of %s): "+
		"the agent pod used a median **%.2f %%** of a core (range %.2f–%.2f %%; its cgroup's cpuacct; target ≤ %.0f %%: **%s**) and **%d MiB** RSS at the end (target ≤ %d MiB: **%s**).\n",
		agentSlivers, flows[len(flows)/2], len(cpu), agentWindow, cpu[len(cpu)/2]*100, cpu[0]*100, cpu[len(cpu)-1]*100, agentCPUTarget*100, verdict(cpu[len(cpu)/2] <= agentCPUTarget),
		r.agentRSS>>20, agentRSSTarget>>20, verdict(r.agentRSS <= agentRSSTarget))
	return b.String()
}

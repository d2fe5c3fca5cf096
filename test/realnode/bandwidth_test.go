package realnode

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/planetkube/planetkube/internal/agent/bandwidth"
	"github.com/planetkube/planetkube/internal/testing/poll"
)

// The bandwidth case's budget: a slice past threshold × budget (21.6 MB,
// a few seconds at nodeCap) is held to (budget − used) × 8 / (seconds left
// in the day): about 4 Mbit/s, a day being 86,400 s. The agent reads its
// counters and sets the ceils every interval.
const (
	bwNodeCap   = 100_000_000
	bwBudget    = 43_200_000_000
	bwThreshold = 0.0005
	bwInterval  = "2s"
)

// testBandwidth: helm upgrade --reuse-values turning on the agent's
// bandwidth shaping on the node's uplink (inet0, to the internet
// namespace) rolls the agent's DaemonSet: the agent pod is replaced and the
// new one Ready with the new flags, and the manager answers webhook calls
// during the upgrade. A sliver sending to the internet without end passes
// its budget's threshold: its Slice gets a BandwidthCapped event naming the
// node, the agent's ceil is the formula's, and the rate arriving in the
// internet namespace (its link's received bytes: on the wire) is that ceil
// within 10 %. The release is set back as it was (bandwidth off), and the
// agent then removes its shaping from inet0.
func testBandwidth(ctx context.Context, t *testing.T, e *env) {
	inet, err := e.node.Internet()
	if err != nil {
		t.Fatal(err)
	}
	addr := inet.IP + ":9001"
	if _, err := inet.Start("bw-serve", e.imgs.WorkloadProgram, "tcp-serve", "-listen", addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.bandwidthOff(ctx, t, inet.Uplink) })
	old := e.agentPod(ctx, t)
	oldManagers := map[types.UID]bool{}
	for _, p := range e.managerPods(ctx, t) {
		oldManagers[p.UID] = true
	}

	// The upgrade rolls the agents (bandwidth on) and the manager (a
	// changed value of its own); meanwhile, every 200 ms, a good Slice is
	// admitted and a bad one refused by the webhook (server-side dry runs:
	// the webhook is called, nothing is stored).
	stop := make(chan struct{})
	probes := make(chan []string, 1)
	go func() { probes <- e.probeWebhook(ctx, stop) }()
	began := time.Now()
	out, err := e.run("helm", []string{"upgrade", release, e.chart, "-n", ns, "--reuse-values", "--wait", "--timeout", "4m",
		"--set", "manager.kubeAPIQPS=999",
		"--set", "nodeAgent.bandwidth.enabled=true", "--set", "nodeAgent.bandwidth.uplink=" + inet.Uplink,
		"--set", fmt.Sprintf("nodeAgent.bandwidth.nodeCap=%d", bwNodeCap), "--set", fmt.Sprintf("nodeAgent.bandwidth.budget=%d", int64(bwBudget)),
		"--set-json", fmt.Sprintf("nodeAgent.bandwidth.threshold=%v", bwThreshold), "--set", "nodeAgent.bandwidth.interval=" + bwInterval,
		"--kubeconfig", e.c.Kubeconfig}, e.helmEnv(t)...)
	close(stop)
	failures := <-probes
	if err != nil {
		t.Fatalf("helm upgrade: %v\n%s\n%s", err, out, e.diagnose())
	}
	n, bad := 0, []string{}
	for _, f := range failures {
		if f == "" {
			n++
		} else {
			bad = append(bad, f)
		}
	}
	t.Logf("helm upgrade --wait took %s; %d webhook probes (a good and a bad Slice each) answered right, %d wrong", time.Since(began).Round(time.Millisecond), n, len(bad))
	if len(bad) > 0 {
		t.Errorf("During the rollout the webhook answered wrong %d times of %d: %v", len(bad), len(failures), bad)
	}
	if n < 5 {
		t.Errorf("Only %d webhook probes during the upgrade: the rollout was not watched", n)
	}
	// Those of the old ones still going (their preStop's 5 s) aside.
	fresh := 0
	for _, p := range e.managerPods(ctx, t) {
		switch {
		case p.DeletionTimestamp != nil:
		case oldManagers[p.UID]:
			t.Errorf("Manager pod %s was not replaced by the upgrade: no rollout of the manager", p.Name)
		default:
			fresh++
		}
	}
	if fresh != 2 {
		t.Errorf("%d new manager pods after the upgrade, want 2", fresh)
	}
	agent := e.replacedAgent(ctx, t, old.UID)
	t.Logf("Agent %s → %s", old.Name, agent.Name)
	args := agent.Spec.Containers[0].Args
	for _, want := range []string{"--bandwidth", "--bandwidth-uplink=" + inet.Uplink, "--bandwidth-threshold=" + fmt.Sprint(bwThreshold)} {
		if !slices.Contains(args, want) {
			t.Errorf("The new agent's args %v lack %s", args, want)
		}
	}

	// A sliver sending without end.
	if err := e.k8s.Create(ctx, e.slice("bw-hog", "princeton", 1, []string{"tcp-send", "-to", addr, "-bytes", "0"})); err != nil {
		t.Fatal(err)
	}
	defer e.deleteSlices(ctx, "bw-hog")
	e.runningSliver(ctx, t, "bw-hog")
	const full = "plc.princeton.bw-hog"
	var c0 float64
	poll.Until(t, "the agent capping "+full, 2*time.Minute, 500*time.Millisecond, func() error {
		capped, err := e.agentMetric("planetkube_agent_slice_bandwidth_capped", "slice", full)
		if err != nil {
			return err
		}
		if capped != 1 {
			return fmt.Errorf("capped %v", capped)
		}
		c0, err = e.agentMetric("planetkube_agent_slice_ceil_bits_per_second", "slice", full, "class", "budget")
		return err
	})
	// Measure on the wire once the queue the uncapped rate filled has
	// drained (3 s), for 10 s.
	wait(t, "the queue draining", 3*time.Second)
	r0, t0 := rxBytes(t, inet.NetNS)
	wait(t, "10 s at the ceil", 10*time.Second)
	r1, t1 := rxBytes(t, inet.NetNS)
	c1, err := e.agentMetric("planetkube_agent_slice_ceil_bits_per_second", "slice", full, "class", "budget")
	if err != nil {
		t.Fatal(err)
	}
	used, err := e.agentMetric("planetkube_agent_slice_bytes_today", "slice", full, "class", "budget")
	if err != nil {
		t.Fatal(err)
	}
	ceil := (c0 + c1) / 2
	wire := float64(r1-r0) * 8 / t1.Sub(t0).Seconds()
	t.Logf("Held: ceil %.0f → %.0f bit/s after %.1f MB; on the wire %.0f bit/s over %s (%.3f of the ceil)",
		c0, c1, used/1e6, wire, t1.Sub(t0).Round(time.Millisecond), wire/ceil)
	if wire < ceil*0.9 || wire > ceil*1.1 {
		t.Errorf("Rate on the wire %.0f bit/s, want the ceil %.0f bit/s within 10 %%", wire, ceil)
	}
	// The day began at the slice's first reading, seconds ago.
	if formula := (bwBudget - used) * 8 / 86400; math.Abs(c1-formula) > formula*0.01 {
		t.Errorf("Ceil %.0f bit/s, want (budget − used) × 8 / seconds left in the day ≈ %.0f", c1, formula)
	}

	note := e.sliceEvent(ctx, t, "bw-hog", bandwidth.ReasonBandwidthCapped)
	t.Logf("Event: %s", note)
	if !strings.Contains(note, "node "+e.node.Name) {
		t.Errorf("BandwidthCapped note %q, want it to name node %s", note, e.node.Name)
	}
}

// bandwidthOff sets the release back to bandwidth shaping off (the
// sender's slice deleted first), and checks that the agent then removes
// the shaping from the uplink: the chart tells it the uplink when off too.
func (e *env) bandwidthOff(ctx context.Context, t *testing.T, uplink string) {
	e.deleteSlices(ctx, "bw-hog", "bw-rollout")
	e.helm(t, "upgrade", release, e.chart, "-n", ns, "--reuse-values", "--wait", "--timeout", "4m", "--set", "nodeAgent.bandwidth.enabled=false")
	poll.Until(t, "the agent removing its shaping from "+uplink, time.Minute, time.Second, func() error {
		out, err := e.node.Exec(ctx, sbin("tc"), "qdisc", "show", "dev", uplink)
		if err != nil || strings.Contains(out, "htb") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

// helmEnv is the environment e.helm gives helm.
func (e *env) helmEnv(t *testing.T) []string {
	return []string{"HELM_CACHE_HOME=" + t.TempDir(), "HELM_CONFIG_HOME=" + t.TempDir(), "HELM_DATA_HOME=" + t.TempDir()}
}

// wait lets d pass (a measuring interval, not a synchronisation).
func wait(t *testing.T, what string, d time.Duration) {
	t.Helper()
	began := time.Now()
	poll.Until(t, what, d+time.Minute, 100*time.Millisecond, func() error {
		if left := d - time.Since(began); left > 0 {
			return fmt.Errorf("%s left", left)
		}
		return nil
	})
}

// rxBytes reads the bytes the internet namespace's link received, and when.
func rxBytes(t *testing.T, netns string) (uint64, time.Time) {
	t.Helper()
	out, err := exec.Command(sbin("ip"), "-n", netns, "-s", "-j", "link", "show", "dev", "eth0").Output()
	at := time.Now()
	if err != nil {
		t.Fatalf("ip -n %s -s link show dev eth0: %v", netns, err)
	}
	var links []struct {
		Stats64 struct {
			RX struct {
				Bytes uint64 `json:"bytes"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -s -j link show: %v: %s", err, out)
	}
	return links[0].Stats64.RX.Bytes, at
}

// sbin is the path of an iproute2 command (in /usr/sbin, which root's
// $PATH may lack).
func sbin(name string) string {
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	return name
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// agentMetric reads a gauge of the agent's metrics on the node whose
// labels include labels (name, value pairs).
func (e *env) agentMetric(name string, labels ...string) (float64, error) {
	resp, err := http.Get(fmt.Sprintf("http://%s:%d/metrics", e.node.IP, 9471))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		set, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !slices.Contains(strings.Split(set, ","), fmt.Sprintf("%s=%q", labels[i], labels[i+1])) {
				match = false
			}
		}
		if match {
			return strconv.ParseFloat(strings.TrimSpace(value), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s%v among the agent's metrics (HTTP %d)", name, labels, resp.StatusCode)
}

// probeWebhook, until stop is closed, asks the API server every 200 ms to
// admit a good Slice and a bad one (expiring in 10 weeks) as server-side
// dry runs, and returns one entry a probe: "" when the good one was
// admitted and the bad one refused by the webhook, else what went wrong.
func (e *env) probeWebhook(ctx context.Context, stop <-chan struct{}) []string {
	var out []string
	far := metav1.NewTime(time.Now().Add(10 * 7 * 24 * time.Hour))
	for i := 0; ; i++ {
		select {
		case <-stop:
			return out
		case <-time.After(200 * time.Millisecond):
		}
		good := e.slice(fmt.Sprintf("probe-%d", i), "princeton", 1, []string{"pause"})
		bad := e.slice(fmt.Sprintf("probe-bad-%d", i), "princeton", 1, []string{"pause"})
		bad.Spec.ExpiresAt = &far
		var wrong []string
		if err := e.k8s.Create(ctx, good, client.DryRunAll); err != nil {
			wrong = append(wrong, "good refused: "+err.Error())
		}
		if err := e.k8s.Create(ctx, bad, client.DryRunAll); err == nil || !strings.Contains(err.Error(), "8 weeks") {
			wrong = append(wrong, fmt.Sprintf("bad not refused by the webhook: %v", err))
		}
		out = append(out, strings.Join(wrong, "; "))
	}
}

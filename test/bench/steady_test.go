package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/testing/emulator"
)

const (
	steadyHeading = "## Steady state at scale (issue 8)"
	// steadySlices slices over every node make the 20,000 slivers.
	steadySlices = 20
)

var steadyPairs = flag.Int("bench-pairs", 3, "alternating floor/slices pairs of the steady-state benchmark")

// steadyResult holds the figures of the steady-state benchmark.
type steadyResult struct {
	nodes, slivers int
	// floor and slices hold one timing per pair, in pair order; slicesFirst
	// says which side of each pair ran first.
	floor, slices []timing
	slicesFirst   []bool
	// cpu: the manager's CPU time over the last slice rollout; cpuTop
	// the top lines of its CPU profile over it.
	cpu        time.Duration
	cpuTop     string
	cpuSeconds int
	converged
	machine machine
}

// converged holds what is measured once every slice has converged: the
// manager's memory, a restart, a node joining.
type converged struct {
	// rss is the manager's peak RSS; anon the most anonymous memory
	// (RssAnon) it held, sampled every 250 ms from the first rollout on.
	rss, anon int64
	// heapTop and heapLive: the top lines of its heap profile and the heap
	// in use, after a collection.
	heapTop  string
	heapLive int64
	// restart: time from a new manager's start to its slice queue drained
	// with every slice reconciled, and its writes then and 15 s later.
	restartSynced time.Duration
	restartWrites int
	// join: what one node joining cost.
	join joined
}

// measureConverged waits for the slices to show every sliver ready over n
// nodes, stops sampling the memory, and measures the manager's memory, a
// restart and a node joining into cv.
func measureConverged(ctx context.Context, t *testing.T, c *emulator.Cluster, k8s client.Client, metricsPort int, prof profiler,
	slices []string, n int, stopSampling func(), cv *converged) error {
	if err := waitSlicesConverged(ctx, k8s, slices, n); err != nil {
		return err
	}
	stopSampling()
	var err error
	if cv.rss, err = lastManager(c).PeakRSSBytes(); err != nil {
		return err
	}
	if cv.heapTop, cv.heapLive, err = liveHeap(ctx, t, prof, metricsPort); err != nil {
		return err
	}
	if cv.restartSynced, cv.restartWrites, err = restartManager(ctx, t, c, metricsPort, len(slices)); err != nil {
		return err
	}
	cv.join, err = joinNode(ctx, t, c, k8s, metricsPort, slices, n)
	return err
}

// runSteadyState measures 20 slices over every node against the floor of as
// many bare pods, in alternating pairs, then a manager restart and a node
// joining with the slices converged.
func runSteadyState(ctx context.Context, t *testing.T, c *emulator.Cluster, metricsPort int, prof profiler) (*steadyResult, error) {
	t.Helper()
	k8s, bareClient, err := benchClients(ctx, c)
	if err != nil {
		return nil, err
	}
	// The site runs 20 slices at once (PlanetLab's default is 10).
	if err := updateSite(ctx, k8s, func(s *planetv1.SiteSpec) { s.MaxSlices = ptr.To[int32](2 * steadySlices) }); err != nil {
		return nil, fmt.Errorf("raising the site's maxSlices: %w", err)
	}
	n := len(c.NodeNames)
	res := &steadyResult{nodes: n, slivers: n * steadySlices}
	stopSampling := sampleAnon(lastManager(c), &res.anon)
	var lastSlices []string
	for pair := range *steadyPairs {
		// Alternate which side goes first, ending with the floor first: the
		// last pair's slices stay for the restart and the join.
		slicesFirst := (*steadyPairs-1-pair)%2 == 1
		res.slicesFirst = append(res.slicesFirst, slicesFirst)
		floorNS := fmt.Sprintf("bench-floor-%d", pair)
		names := make([]string, steadySlices)
		for i := range names {
			names[i] = fmt.Sprintf("p%d-s%02d", pair, i)
		}
		runFloor := func() error {
			if err := createNamespace(ctx, c.Client, floorNS); err != nil {
				return err
			}
			tm, err := measure(ctx, t, c.Client, phase{name: fmt.Sprintf("Floor %d", pair), namespace: floorNS, start: func(ctx context.Context) error {
				return createManyFloorPods(ctx, bareClient, floorNS, c.NodeNames, steadySlices)
			}}, res.slivers, 15*time.Minute)
			res.floor = append(res.floor, tm)
			if err != nil {
				return err
			}
			return deletePodsAndWait(ctx, t, c.Client, []string{floorNS})
		}
		runSlices := func() error {
			cpu0, _ := managerCPU(c)
			var cpuProfile chan error
			if pair == *steadyPairs-1 {
				// The last rollout's CPU profile: as long as the rollout
				// before it took (a minute if none did).
				res.cpuSeconds = 60
				if len(res.slices) > 0 {
					res.cpuSeconds = int(res.slices[len(res.slices)-1].running.Seconds()) + 5
				}
				cpuProfile = make(chan error, 1)
				go func() {
					file, err := prof.fetch(ctx, "profile?seconds="+strconv.Itoa(res.cpuSeconds), "rollout-cpu.pprof")
					if err == nil {
						res.cpuTop, err = prof.top(ctx, file, "", 15)
					}
					cpuProfile <- err
				}()
			}
			tm, err := measure(ctx, t, c.Client, phase{
				name: fmt.Sprintf("Slices %d", pair), selector: planetv1.LabelSlice + " in (" + strings.Join(names, ",") + ")",
				start: func(ctx context.Context) error { return createSlices(ctx, k8s, names) },
			}, res.slivers, 15*time.Minute)
			res.slices = append(res.slices, tm)
			if err != nil {
				return err
			}
			cpu1, _ := managerCPU(c)
			res.cpu = cpu1 - cpu0
			if pair == *steadyPairs-1 {
				lastSlices = names
				return <-cpuProfile // the slices are kept for the restart and the join
			}
			return deleteSlicesAndWait(ctx, t, k8s, c.Client, names)
		}
		order := []func() error{runFloor, runSlices}
		if slicesFirst {
			order = []func() error{runSlices, runFloor}
		}
		for _, run := range order {
			if err := run(); err != nil {
				return nil, err
			}
		}
	}
	// Converged: every slice's status says so, before the restart and the
	// join count their writes.
	if err := measureConverged(ctx, t, c, k8s, metricsPort, prof, lastSlices, n, stopSampling, &res.converged); err != nil {
		return nil, err
	}
	return res, nil
}

// liveHeap returns the top lines of the manager's heap profile and the heap
// in use, both read after a collection (gc=1), so they show what is live.
func liveHeap(ctx context.Context, t *testing.T, prof profiler, metricsPort int) (top string, live int64, err error) {
	heap, err := prof.fetch(ctx, "heap?gc=1", "converged-heap.pprof")
	if err != nil {
		return "", 0, err
	}
	if top, err = prof.top(ctx, heap, "inuse_space", 20); err != nil {
		return "", 0, err
	}
	m, err := scrape(ctx, metricsPort)
	if err != nil {
		return "", 0, err
	}
	live = int64(m.value("go_memstats_heap_alloc_bytes"))
	t.Logf("Profiles in %s; live heap %d MiB", prof.dir, live>>20)
	return top, live, nil
}

// restartManager stops the manager and starts a new one over the converged
// slices, and returns the time to resynced (every slice reconciled, its queue
// empty) and the new manager's writes until 15 s after.
func restartManager(ctx context.Context, t *testing.T, c *emulator.Cluster, metricsPort, slices int) (synced time.Duration, writes int, err error) {
	if err := lastManager(c).Stop(); err != nil {
		return 0, 0, err
	}
	began := time.Now()
	if _, err := c.StartPlanetKube(ctx, withManagerArgs("--metrics-secure=false", "--metrics-bind-address=127.0.0.1:"+strconv.Itoa(metricsPort))...); err != nil {
		return 0, 0, err
	}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		m, err := scrape(ctx, metricsPort)
		if err != nil {
			return false, nil
		}
		return m.sum("controller_runtime_reconcile_total", "controller", "slice") >= float64(slices) &&
			m.sum("workqueue_depth", "name", "slice") == 0, nil
	}); err != nil {
		return 0, 0, fmt.Errorf("waiting for the restarted manager to resync: %w", err)
	}
	synced = time.Since(began)
	time.Sleep(15 * time.Second) //nolint:forbidigo // a quiet period to count writes in, not synchronisation
	m, err := scrape(ctx, metricsPort)
	if err != nil {
		return 0, 0, err
	}
	t.Logf("Restart: resynced in %s, %d writes", synced, m.writes())
	return synced, m.writes(), nil
}

// joined is what one node joining cost: the time to its slivers Running, the
// manager's writes, and the API server's pod creates, Slice status writes
// and event writes over the join.
type joined struct {
	running                      time.Duration
	writes, pods, status, events int
}

// joinNode adds node n+1 of the bench site once the slices have converged
// over n nodes, and measures what its slivers cost.
func joinNode(ctx context.Context, t *testing.T, c *emulator.Cluster, k8s client.Client, metricsPort int, slices []string, n int) (joined, error) {
	var j joined
	if err := waitSlicesConverged(ctx, k8s, slices, n); err != nil {
		return j, err
	}
	before, err := scrape(ctx, metricsPort)
	if err != nil {
		return j, err
	}
	apiBefore, err := apiserverRequests(ctx, c)
	if err != nil {
		return j, err
	}
	node := emulator.NodeName(benchSite, n+1)
	tr := newTracker(len(slices), func(p *corev1.Pod) bool { return p.Spec.NodeName == node })
	informer := podInformer(c.Client, "", planetv1.LabelSlice+" in ("+strings.Join(slices, ",")+")", tr)
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	go informer.RunWithContext(ictx)
	if !cacheSynced(ictx, informer.HasSynced) {
		return j, fmt.Errorf("the join's pod watch did not sync")
	}
	tr.begin()
	if err := c.AddNode(ctx, node, benchSite); err != nil {
		return j, err
	}
	tm, err := waitDone(ctx, t, "Join", tr)
	if err != nil {
		return j, err
	}
	j.running = tm.running
	time.Sleep(10 * time.Second) //nolint:forbidigo // a quiet period to count the join's writes in
	after, err := scrape(ctx, metricsPort)
	if err != nil {
		return j, err
	}
	j.writes = after.writes() - before.writes()
	apiAfter, err := apiserverRequests(ctx, c)
	if err != nil {
		return j, err
	}
	// During the join only the manager creates pods and writes Slice
	// statuses; the events are every client's (kube-controller-manager's
	// about the new node among them).
	j.pods = apiAfter["POST pods 201"] - apiBefore["POST pods 201"]
	j.status = requestsDelta(apiBefore, apiAfter, "PATCH slices/status", "PUT slices/status")
	j.events = requestsDelta(apiBefore, apiAfter, "POST events", "PATCH events")
	for k, v := range apiAfter {
		if verb, _, _ := strings.Cut(k, " "); v > apiBefore[k] && verb != "GET" && verb != "LIST" && verb != "WATCH" {
			t.Logf("Join: the API server's %s: %d (every client's)", k, v-apiBefore[k])
		}
	}
	t.Logf("Join: slivers Running in %s; %d writes: %d pod creates, %d slice status writes, %d event writes", j.running, j.writes, j.pods, j.status, j.events)
	return j, nil
}

// sampleAnon keeps in peak the most anonymous memory p holds, read every
// 250 ms until the function it returns is called.
func sampleAnon(p *emulator.Process, peak *int64) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			if b, err := p.AnonRSSBytes(); err == nil {
				*peak = max(*peak, b)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// waitSlicesConverged waits until every slice's status shows n/n slivers
// ready.
func waitSlicesConverged(ctx context.Context, k8s client.Client, names []string, n int) error {
	want := fmt.Sprintf("%d/%d", n, n)
	// last is what each slice's status said when last read (a Get cut
	// short by the deadline keeps the previous reading).
	last := map[string]string{}
	err := wait.PollUntilContextTimeout(ctx, time.Second, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		done := true
		for _, name := range names {
			s := &planetv1.Slice{}
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: benchSite, Name: name}, s); err != nil {
				if _, seen := last[name]; !seen {
					last[name] = err.Error()
				}
				done = false
				continue
			}
			last[name] = fmt.Sprintf("%s (desired %d, ready %d, pending %d), not ready: %v, Ready: %v",
				s.Status.Slivers, s.Status.DesiredSlivers, s.Status.ReadySlivers, s.Status.PendingSlivers, s.Status.NotReady,
				meta.FindStatusCondition(s.Status.Conditions, planetv1.ConditionReady))
			done = done && s.Status.Slivers == want
		}
		return done, nil
	})
	if err != nil {
		var lagging []string
		for _, name := range names {
			lagging = append(lagging, name+": "+last[name])
		}
		return fmt.Errorf("waiting for every slice to show %s: %w; %s", want, err, strings.Join(lagging, "; "))
	}
	return nil
}

func cacheSynced(ctx context.Context, synced func() bool) bool {
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return synced(), nil
	}) == nil
}

// lastManager returns the manager process started last.
func lastManager(c *emulator.Cluster) *emulator.Process {
	var last *emulator.Process
	for _, p := range c.Processes() {
		if strings.HasPrefix(p.Name, "manager-") && !p.Exited() {
			last = p
		}
	}
	return last
}

func managerCPU(c *emulator.Cluster) (time.Duration, error) {
	if p := lastManager(c); p != nil {
		return p.CPUTime()
	}
	return 0, fmt.Errorf("no manager")
}

// createSlices creates slices over every node, one per name.
func createSlices(ctx context.Context, k8s client.Client, names []string) error {
	for _, name := range names {
		s := &planetv1.Slice{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: benchSite},
			Spec:       planetv1.SliceSpec{Template: planetv1.SliverTemplate{Image: pauseImage}},
		}
		if err := k8s.Create(ctx, s); err != nil {
			return fmt.Errorf("creating slice %s: %w", name, err)
		}
	}
	return nil
}

// createManyFloorPods creates perNode bare pods on each node.
func createManyFloorPods(ctx context.Context, cs kubernetes.Interface, ns string, nodes []string, perNode int) error {
	return inParallel(perNode*len(nodes), func(k int) error {
		node, i := nodes[k%len(nodes)], k/len(nodes)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("floor-%02d-%s", i, node), Namespace: ns},
			Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "pause", Image: pauseImage}}},
		}
		_, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		return err
	})
}

// inParallel runs fn(k) for k in [0, n), in order, from floorWorkers
// goroutines, and returns the first error.
func inParallel(n int, fn func(k int) error) error {
	work := make(chan int)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range floorWorkers {
		wg.Go(func() {
			for k := range work {
				if err := fn(k); err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
				}
			}
		})
	}
	for k := range n {
		work <- k
	}
	close(work)
	wg.Wait()
	return first
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// deleteSlicesAndWait deletes the slices and their slivers (at once, with no
// grace period: kwok would finish 20,000 graceful deletions one by one) and
// waits until none is left.
func deleteSlicesAndWait(ctx context.Context, t *testing.T, k8s client.Client, cs kubernetes.Interface, names []string) error {
	for _, name := range names {
		if err := k8s.Delete(ctx, &planetv1.Slice{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: benchSite}}); err != nil {
			return err
		}
	}
	var namespaces []string
	for _, name := range names {
		namespaces = append(namespaces, naming.SliceNamespace(benchSite, name))
	}
	return deletePodsAndWait(ctx, t, cs, namespaces)
}

// deletePodsAndWait deletes every pod of the namespaces with no grace
// period, then the namespaces, and waits until no pod is left in them.
func deletePodsAndWait(ctx context.Context, t *testing.T, cs kubernetes.Interface, namespaces []string) error {
	began := time.Now()
	err := wait.PollUntilContextTimeout(ctx, time.Second, 15*time.Minute, true, func(ctx context.Context) (bool, error) {
		left := 0
		for _, ns := range namespaces {
			list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
			if err != nil {
				return false, nil
			}
			if len(list.Items) > 0 {
				_ = cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{})
			}
			left += len(list.Items)
		}
		return left == 0, nil
	})
	for _, ns := range namespaces {
		_ = cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	}
	t.Logf("Cleanup took %s", time.Since(began).Round(time.Second))
	return err
}

// metricFamilies are scraped Prometheus metrics.
type metricFamilies map[string]*dto.MetricFamily

// sum adds the values of a counter or gauge whose label has value.
func (m metricFamilies) sum(name, label, value string) float64 {
	total := 0.0
	for _, s := range m[name].GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				total += s.GetCounter().GetValue() + s.GetGauge().GetValue()
			}
		}
	}
	return total
}

// value is the value of an unlabelled gauge or counter.
func (m metricFamilies) value(name string) float64 {
	total := 0.0
	for _, s := range m[name].GetMetric() {
		total += s.GetCounter().GetValue() + s.GetGauge().GetValue()
	}
	return total
}

// writes counts the manager's API requests that write.
func (m metricFamilies) writes() int {
	total := 0.0
	for _, method := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		total += m.sum("rest_client_requests_total", "method", method)
	}
	return int(total)
}

// scrape reads the manager's metrics.
func scrape(ctx context.Context, port int) (metricFamilies, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(port)+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (metricFamilies, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

// apiserverRequests reads the API server's request counts (every client's)
// as "<verb> <resource>[/<subresource>] <code>" → count.
func apiserverRequests(ctx context.Context, c *emulator.Cluster) (map[string]int, error) {
	body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	m, err := parseMetrics(strings.NewReader(string(body)))
	if err != nil {
		return nil, fmt.Errorf("parsing the API server's metrics: %w", err)
	}
	out := map[string]int{}
	for _, s := range m["apiserver_request_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range s.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		resource := labels["resource"]
		if labels["subresource"] != "" {
			resource += "/" + labels["subresource"]
		}
		out[labels["verb"]+" "+resource+" "+labels["code"]] += int(s.GetCounter().GetValue())
	}
	return out, nil
}

// requestsDelta sums the requests of after minus before whose verb and
// resource are one of keys ("<verb> <resource>"), whatever their code.
func requestsDelta(before, after map[string]int, keys ...string) int {
	n := 0
	for k, v := range after {
		verb, rest, _ := strings.Cut(k, " ")
		resource, _, _ := strings.Cut(rest, " ")
		if slices.Contains(keys, verb+" "+resource) {
			n += v - before[k]
		}
	}
	return n
}

// freeLocalPort returns a free loopback TCP port.
func freeLocalPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// medianRange returns the median of the ratios and their range.
func medianRange(rs []float64) (median, lo, hi float64) {
	s := slices.Clone(rs)
	slices.Sort(s)
	n := len(s)
	median = s[n/2]
	if n%2 == 0 {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	return median, s[0], s[n-1]
}

// markdown returns the body of the steady-state section.
func (r *steadyResult) markdown() string {
	var b strings.Builder
	m := r.machine
	fmt.Fprintf(&b, "Command: `make bench` (alone: `go test ./test/bench/ -run TestSteadyState -v -timeout 60m -args -bench-out=$PWD/docs/benchmarks.md`). "+
		"Date: %s. Machine: %d CPUs (%s), Linux %s, %s. One emulated cluster of %d kwok nodes (site `%s`).\n\n",
		m.date.Format("2006-01-02 15:04 MST"), m.cpus, m.cpuModel, m.kernel, m.goVersion, r.nodes, benchSite)
	fmt.Fprintf(&b, "**Rollout of %d slices over every node (%d slivers)** against the floor: %d bare pods (%d per node) made by client-go with no rate limit from %d goroutines, in the same run. "+
		"The two sides alternate over %d pairs (the first side of each pair alternates too); each side starts on an emptied cluster.\n\n",
		steadySlices, r.slivers, r.slivers, steadySlices, floorWorkers, len(r.floor))
	b.WriteString("| Pair | First | Floor: all Running | Slices: all Running | Slices / floor |\n|---:|---|---:|---:|---:|\n")
	var ratios []float64
	for i := range r.floor {
		first := "floor"
		if r.slicesFirst[i] {
			first = "slices"
		}
		q := r.slices[i].running.Seconds() / r.floor[i].running.Seconds()
		ratios = append(ratios, q)
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %.2f× |\n", i+1, first, seconds(r.floor[i].running), seconds(r.slices[i].running), q)
	}
	med, lo, hi := medianRange(ratios)
	fmt.Fprintf(&b, "\nSlices / floor, all Running: **median %.2f×** (range %.2f×–%.2f× over %d pairs).\n\n", med, lo, hi, len(ratios))
	fmt.Fprintf(&b, "| Steady state | Measured | Target |\n|---|---:|---:|\n")
	fmt.Fprintf(&b, "| Manager restart over %d converged slices: time to resynced (every slice reconciled, queue empty) | %s | — |\n", steadySlices, seconds(r.restartSynced))
	fmt.Fprintf(&b, "| Manager restart: writes by the new manager (until 15 s after resync) | %d | 0 |\n", r.restartWrites)
	fmt.Fprintf(&b, "| One node joins: pods created | %d | %d |\n", r.join.pods, steadySlices)
	fmt.Fprintf(&b, "| One node joins: all the manager's writes (pods, slice statuses, events) | %d | — |\n", r.join.writes)
	fmt.Fprintf(&b, "| One node joins: Slice status writes; events (the API server's counts) | %d; %d | ≤ %d (one a slice) |\n", r.join.status, r.join.events, steadySlices)
	fmt.Fprintf(&b, "| One node joins: its %d slivers Running | %s | — |\n", steadySlices, seconds(r.join.running))
	fmt.Fprintf(&b, "| Manager CPU per 10,000 slivers (last rollout) | %.1f s | — |\n", r.cpu.Seconds()*10000/float64(r.slivers))
	fmt.Fprintf(&b, "| Manager peak RSS (VmHWM) with %d slivers; per 10,000 | %.0f MiB; %.0f MiB | ≤ 100 MiB |\n", r.slivers, float64(r.rss)/(1<<20), float64(r.rss)/(1<<20)*10000/float64(r.slivers))
	fmt.Fprintf(&b, "| Manager peak anonymous memory (RssAnon, every 250 ms; not its binary's pages); per 10,000 | %.0f MiB; %.0f MiB | — |\n", float64(r.anon)/(1<<20), float64(r.anon)/(1<<20)*10000/float64(r.slivers))
	fmt.Fprintf(&b, "| Manager live heap once converged (after a collection); per 10,000 | %.0f MiB; %.0f MiB | — |\n\n", float64(r.heapLive)/(1<<20), float64(r.heapLive)/(1<<20)*10000/float64(r.slivers))
	fmt.Fprintf(&b, "The floor and the slices are both bound by the API server's write throughput and kwok marking %d pods Running on the same CPUs; ", r.slivers)
	b.WriteString(
		"a node joining queues only the slices whose selection matches it (here all 20), and each reconcile reads the shared cluster view, " +
			"so the join costs one sliver create per slice plus each slice's status. The restart and the join are measured once every slice's status shows all its slivers ready.\n")
	fmt.Fprintf(&b, "\n**Where the manager's time goes**: its CPU profile over the first %d s of the last rollout (`--pprof-bind-address`, `go tool pprof -top`):\n\n```\n%s\n```\n", r.cpuSeconds, r.cpuTop)
	fmt.Fprintf(&b, "\n**Where its memory goes**: the heap in use once every slice converged (`heap?gc=1`, `-sample_index=inuse_space`):\n\n```\n%s\n```\n", r.heapTop)
	return b.String()
}

// TestSteadyState runs the steady-state benchmark of issue 8 on a cluster of
// its own and writes its section of the file named by -bench-out.
func TestSteadyState(t *testing.T) {
	if *benchOut == "" {
		t.Skip("Skipping the benchmarks: no -bench-out file given (run `make bench`)")
	}
	binDir := findBinDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Minute)
	defer cancel()
	c := startCluster(ctx, t, binDir, *benchNodes)
	port, prof := startProfiledManager(ctx, t, c)
	res, err := runSteadyState(ctx, t, c, port, prof)
	if err != nil {
		t.Fatal(err)
	}
	res.machine = describeMachine()
	reportManagerErrors(t, lastManager(c))
	publish(t, steadyHeading, res.markdown())
}

// updateSite changes the bench site's spec, again on a conflict (the Site
// controller writes its status).
func updateSite(ctx context.Context, k8s client.Client, change func(*planetv1.SiteSpec)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		site := &planetv1.Site{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: benchSite}, site); err != nil {
			return err
		}
		change(&site.Spec)
		return k8s.Update(ctx, site)
	})
}

// startProfiledManager installs PlanetKube and starts its manager with
// metrics on a free loopback port and pprof on another, its profiles kept
// in the cluster's log folder.
func startProfiledManager(ctx context.Context, t *testing.T, c *emulator.Cluster) (metricsPort int, prof profiler) {
	t.Helper()
	if err := c.InstallPlanetKube(ctx); err != nil {
		t.Fatal(err)
	}
	metricsPort, err := freeLocalPort()
	if err != nil {
		t.Fatal(err)
	}
	pprofPort, err := freeLocalPort()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartPlanetKube(ctx, withManagerArgs("--metrics-secure=false", "--metrics-bind-address=127.0.0.1:"+strconv.Itoa(metricsPort),
		"--pprof-bind-address=127.0.0.1:"+strconv.Itoa(pprofPort))...); err != nil {
		t.Fatal(err)
	}
	prof = profiler{port: pprofPort, dir: filepath.Join(c.LogDir, "profiles")}
	if err := os.MkdirAll(prof.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return metricsPort, prof
}

package usage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/planetkube/planetkube/internal/agent/podcgroup"
	"github.com/planetkube/planetkube/internal/flow"
	usageapi "github.com/planetkube/planetkube/internal/usage"
)

// DefaultInterval is how often the collector reads the slivers' cgroups
// and makes a new report.
const DefaultInterval = 10 * time.Second

// Collector reads the CPU time of the node's sliver pods every Interval,
// keeps the totals per slice (a Tally) and serves the last report at
// usage.Path: requests never read cgroups, so a burst of them costs a copy
// of the last report each. The pods come from the Pod informer (Update,
// Delete), the flows from the agent's pipeline (CountFlows). Its methods
// are safe for concurrent use.
type Collector struct {
	// Node is the node's name.
	Node string
	// Hierarchy is where CPU time is read; a zero Root reads none (the
	// report's CPUSeconds stay 0).
	Hierarchy Hierarchy
	// Interval between readings (default DefaultInterval).
	Interval time.Duration
	// Bandwidth, when the agent shapes bandwidth, returns what a slice sent
	// in its current budget period and the period's budget (the bandwidth
	// loop's Today); nil leaves both 0.
	Bandwidth func(slice string, now time.Time) (sent, budget uint64)
	// Now is the clock (default time.Now).
	Now func() time.Time

	// pass serialises passes, so that readings fold in the order taken.
	pass  sync.Mutex
	mu    sync.Mutex
	tally Tally
	// last is the last report, encoded, and report it decoded.
	last atomic.Pointer[encoded]
}

// encoded is a report and its JSON.
type encoded struct {
	report *usageapi.Report
	body   []byte
}

// NewCollector returns a collector counting from since (the agent's
// start).
func NewCollector(node string, h Hierarchy, since time.Time) *Collector {
	return &Collector{Node: node, Hierarchy: h, tally: Tally{Since: since}}
}

func (c *Collector) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Update records a sliver pod that was added or changed.
func (c *Collector) Update(s Sliver) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tally.Update(s)
}

// Delete records that a pod is gone (its slice keeps what it used).
func (c *Collector) Delete(uid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tally.Delete(uid)
}

// CountFlows counts the flows of a batch the agent stored (FinalFlows).
func (c *Collector) CountFlows(recs []flow.Record) {
	counts := FinalFlows(recs)
	if len(counts) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for slice, n := range counts {
		c.tally.AddFlows(slice, n)
	}
}

// Tracked is how many pods' CPU counters the collector remembers.
func (c *Collector) Tracked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tally.Tracked()
}

// NeedLeaderElection is false: every agent reports its own node.
func (c *Collector) NeedLeaderElection() bool { return false }

// Start makes a report at once and then every Interval until ctx ends.
func (c *Collector) Start(ctx context.Context) error {
	every := c.Interval
	if every <= 0 {
		every = DefaultInterval
	}
	log := ctrl.LoggerFrom(ctx).WithName("usage")
	t := time.NewTicker(every)
	defer t.Stop()
	missed := 0
	for {
		none, err := c.once()
		if err != nil {
			log.Error(err, "Reading the slivers' CPU time")
		}
		if none > 0 && missed == 0 {
			// Said once until some are found: slivers just made have none
			// for a moment, a wrong cgroup root never has.
			log.Info("Found no sliver's cgroup: their CPU time is not counted until it is found (is --cgroup-root the host's cgroup folder, and --kubelet-cgroup-root the kubelet's cgroupRoot?)", "slivers", none, "hierarchy", c.Hierarchy.Root)
		}
		missed = none
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Once reads every known pod's cgroup, folds the readings and makes a new
// report. A pod whose cgroup is not there is skipped; other errors are
// returned, joined, after the report is made.
func (c *Collector) Once() error {
	_, err := c.once()
	return err
}

// once is Once; it also returns how many active slivers there are when the
// cgroup of none of them was found, else 0.
func (c *Collector) once() (int, error) {
	c.pass.Lock()
	defer c.pass.Unlock()
	c.mu.Lock()
	pods := c.tally.Pods()
	c.mu.Unlock()

	readings := make(map[string]uint64, len(pods))
	var errs []error
	if c.Hierarchy.Root != "" {
		for _, p := range pods {
			n, err := c.Hierarchy.PodUsage(p.QoS, p.UID)
			switch {
			case errors.Is(err, podcgroup.ErrNotFound):
			case err != nil:
				errs = append(errs, fmt.Errorf("pod %s: %w", p.UID, err))
			default:
				readings[p.UID] = n
			}
		}
	}
	now := c.now()

	c.mu.Lock()
	c.tally.Fold(readings)
	r := &usageapi.Report{Node: c.Node, At: now.UTC(), Since: c.tally.Since.UTC(), Slices: c.tally.Slices()}
	c.mu.Unlock()
	none := 0
	if len(readings) == 0 && c.Hierarchy.Root != "" {
		for _, s := range r.Slices {
			none += s.Slivers
		}
	}

	if c.Bandwidth != nil {
		for i := range r.Slices {
			sent, budget := c.Bandwidth(r.Slices[i].Slice, now)
			r.Slices[i].BytesToday, r.Slices[i].BudgetBytes = toInt64(sent), toInt64(budget)
		}
	}
	body, err := json.Marshal(r)
	if err != nil {
		return none, errors.Join(append(errs, err)...)
	}
	c.last.Store(&encoded{report: r, body: append(body, '\n')})
	return none, errors.Join(errs...)
}

// Report returns the last report (nil before the first reading); the
// caller must not change it.
func (c *Collector) Report() *usageapi.Report {
	if e := c.last.Load(); e != nil {
		return e.report
	}
	return nil
}

// ServeHTTP answers GET and HEAD of usage.Path with the last report; 503
// before the first reading.
func (c *Collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Type", "application/json")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	e := c.last.Load()
	if e == nil {
		hd.Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "no reading yet")
		return
	}
	hd.Set("Content-Length", strconv.Itoa(len(e.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(e.body)
	}
}

// writeError answers {"error": msg}.
func writeError(w http.ResponseWriter, code int, msg string) {
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}

// toInt64 converts a count, saturating.
func toInt64(n uint64) int64 {
	if n > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(n)
}

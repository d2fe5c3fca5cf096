package usage

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/agent/bandwidth"
	"github.com/planetkube/planetkube/internal/agent/bandwidth/budget"
	"github.com/planetkube/planetkube/internal/flow"
	"github.com/planetkube/planetkube/internal/testing/poll"
	usageapi "github.com/planetkube/planetkube/internal/usage"
)

// fakeTree is a cgroup v1 cpuacct hierarchy in a temporary folder, laid out
// as the kubelet's cgroupfs driver lays out Burstable pods.
type fakeTree struct {
	t    *testing.T
	root string
}

func newFakeTree(t *testing.T) fakeTree { return fakeTree{t: t, root: t.TempDir()} }

// set writes a pod's cpuacct.usage in seconds.
func (f fakeTree) set(uid string, seconds float64) {
	writeFile(f.t, filepath.Join(f.root, "kubepods", "burstable", "pod"+uid, "cpuacct.usage"), fmt.Sprintf("%d\n", uint64(seconds*1e9)))
}

// get asks the handler with a method and returns the recorder.
func get(h http.Handler, method string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, usageapi.Path, nil))
	return w
}

// decode reads a report from an answer.
func decode(t *testing.T, w *httptest.ResponseRecorder) usageapi.Report {
	t.Helper()
	var r usageapi.Report
	if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil {
		t.Fatalf("decoding %q: %v", w.Body.String(), err)
	}
	return r
}

// TestHandlerAnswersTheLastReading: before the first reading the handler
// answers 503; then the last report, as JSON, not stored by caches, for
// GET and HEAD only; requests never read cgroups (a counter changed on disk
// shows only after the next reading).
func TestHandlerAnswersTheLastReading(t *testing.T) {
	tree := newFakeTree(t)
	at := since.Add(10 * time.Minute)
	c := NewCollector("node1", Hierarchy{Root: tree.root}, since)
	c.Now = func() time.Time { return at }

	w := get(c, http.MethodGet)
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `"error"`) || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("before a reading: %d %q %v, want 503 with an error, no-store", w.Code, w.Body, w.Header())
	}

	c.Update(sliverAt("a", codeen, time.Minute))
	tree.set("a", 2)
	if err := c.Once(); err != nil {
		t.Fatal(err)
	}
	tree.set("a", 5) // read at the next pass only
	for range 20 {
		w = get(c, http.MethodGet)
		if w.Code != http.StatusOK {
			t.Fatalf("GET: %d %s", w.Code, w.Body)
		}
		hd := w.Header()
		if hd.Get("Content-Type") != "application/json" || hd.Get("Cache-Control") != "no-store" || hd.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("GET headers %v", hd)
		}
		r := decode(t, w)
		exp := usageapi.Report{Node: "node1", At: at, Since: since, Slices: []usageapi.Slice{want(codeen, 1, 2, 0)}}
		if !r.At.Equal(exp.At) || !r.Since.Equal(exp.Since) || r.Node != exp.Node || fmt.Sprint(r.Slices) != fmt.Sprint(exp.Slices) {
			t.Fatalf("report %+v, want %+v", r, exp)
		}
	}
	if err := c.Once(); err != nil {
		t.Fatal(err)
	}
	if r := decode(t, get(c, http.MethodGet)); len(r.Slices) != 1 || r.Slices[0].CPUSeconds != 5 {
		t.Fatalf("after the next reading: %+v, want 5 CPU seconds", r)
	}

	w = get(c, http.MethodHead)
	if w.Code != http.StatusOK || w.Body.Len() != 0 || w.Header().Get("Content-Length") == "0" {
		t.Fatalf("HEAD: %d, %d bytes, Content-Length %q; want 200, no body, the GET's length", w.Code, w.Body.Len(), w.Header().Get("Content-Length"))
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		w = get(c, m)
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" || w.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: %d, Allow %q", m, w.Code, w.Header().Get("Allow"))
		}
	}
}

// TestReportHasFlowsAndBytesToday: the flows the pipeline stored count per
// slice, and with bandwidth shaping a slice's bytes in its budget period
// and the budget come from the bandwidth loop's ledger (a slice not in it
// sent nothing; a period that ended counts nothing until the next starts);
// without shaping both are 0.
func TestReportHasFlowsAndBytesToday(t *testing.T) {
	tree := newFakeTree(t)
	ledger := &budget.Ledger{}
	policy := budget.DefaultConfig(1_000_000_000)
	policy.Budget = 1 << 30
	ledger.Observe(codeen, policy, 1000, 0, since)
	ledger.Observe(codeen, policy, 6000, 300, since.Add(time.Minute)) // 5,000 budgeted bytes, 300 exempt
	loop := &bandwidth.Loop{Ledger: ledger, Policy: policy}

	now := since.Add(time.Hour)
	c := NewCollector("node1", Hierarchy{Root: tree.root}, since)
	c.Now = func() time.Time { return now }
	c.Update(sliverAt("a", codeen, time.Minute))
	c.Update(sliverAt("b", coral, time.Minute))
	end := since.Add(time.Second)
	c.CountFlows([]flow.Record{
		{Slice: codeen, Start: since, End: end}, {Slice: codeen, Start: since}, {Slice: codeen, Start: since, End: end},
		{Slice: coral, Start: since, End: end}, {Start: since, End: end},
	})
	c.CountFlows(nil)

	check := func(what string, want ...usageapi.Slice) {
		t.Helper()
		if err := c.Once(); err != nil {
			t.Fatal(err)
		}
		if got := c.Report().Slices; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: %+v, want %+v", what, got, want)
		}
	}
	check("without shaping", want(coral, 1, 0, 1), want(codeen, 1, 0, 2))

	c.Bandwidth = loop.Today
	withBytes := func(s usageapi.Slice, sent int64) usageapi.Slice {
		s.BytesToday, s.BudgetBytes = sent, 1<<30
		return s
	}
	check("with shaping", withBytes(want(coral, 1, 0, 1), 0), withBytes(want(codeen, 1, 0, 2), 5000))

	now = since.Add(policy.Period) // the period ended; the loop's next pass starts another
	check("after the period", withBytes(want(coral, 1, 0, 1), 0), withBytes(want(codeen, 1, 0, 2), 0))
}

// TestStartReadsEveryInterval: the runnable reads at once and then every
// interval, until its context ends.
func TestStartReadsEveryInterval(t *testing.T) {
	tree := newFakeTree(t)
	c := NewCollector("node1", Hierarchy{Root: tree.root}, since)
	c.Interval = 20 * time.Millisecond
	c.Update(sliverAt("a", codeen, time.Minute))
	tree.set("a", 1)
	if c.NeedLeaderElection() {
		t.Error("NeedLeaderElection = true; every agent reports its own node")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start = %v", err)
		}
	}()
	cpu := func(want float64) func() error {
		return func() error {
			r := c.Report()
			if r == nil || len(r.Slices) != 1 || r.Slices[0].CPUSeconds != want {
				return fmt.Errorf("report %+v, want %v CPU seconds", r, want)
			}
			return nil
		}
	}
	poll.Until(t, "the first reading", 5*time.Second, 10*time.Millisecond, cpu(1))
	tree.set("a", 3)
	poll.Until(t, "a later reading", 5*time.Second, 10*time.Millisecond, cpu(3))
}

// TestFetchReadsTheReport: the manager's usage.Fetch reads what the
// handler serves.
func TestFetchReadsTheReport(t *testing.T) {
	tree := newFakeTree(t)
	c := NewCollector("node1", Hierarchy{Root: tree.root}, since)
	c.Update(sliverAt("a", codeen, -time.Minute))
	tree.set("a", 10)
	if err := c.Once(); err != nil {
		t.Fatal(err)
	}
	tree.set("a", 12.25)
	if err := c.Once(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	defer srv.Close()
	r, err := usageapi.Fetch(context.Background(), srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if r.Node != "node1" || !r.Since.Equal(since) || fmt.Sprint(r.Slices) != fmt.Sprint([]usageapi.Slice{want(codeen, 1, 2.25, 0)}) {
		t.Fatalf("Fetch = %+v", r)
	}
}

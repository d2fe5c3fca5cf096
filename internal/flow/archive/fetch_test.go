package archive

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/planetkube/planetkube/internal/flow"
	"github.com/planetkube/planetkube/internal/flow/archive/archivetls"
	"github.com/planetkube/planetkube/internal/flow/fanout"
	"github.com/planetkube/planetkube/internal/flow/segments"
	"github.com/planetkube/planetkube/internal/flow/store"
	"github.com/planetkube/planetkube/internal/testing/testenv"
)

// clock is a settable clock for the node's store.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

// node is a node's real store with segments sealed one per hour of its
// clock, served by the agent's handler behind faults the test injects.
type node struct {
	store *store.Store
	clk   *clock
	srv   *httptest.Server

	mu     sync.Mutex
	ranges []string                                                // Range headers received
	fault  map[string]func(w http.ResponseWriter, r *http.Request) // by file name, once
	files  int                                                     // file requests
}

func newNode(t *testing.T, auth segments.Authenticator, readers []string) *node {
	t.Helper()
	n := &node{clk: &clock{t: t0}, fault: map[string]func(http.ResponseWriter, *http.Request){}}
	s, err := store.Open(context.Background(), store.Options{Dir: t.TempDir(), Now: n.clk.Now, SegmentAge: time.Hour, Retention: 3 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	n.store = s
	h := &segments.Handler{Source: s, Auth: auth, Readers: readers, Node: "node-a"}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, segments.ListPath+"/")
		n.mu.Lock()
		if name != r.URL.Path {
			n.files++
			if rg := r.Header.Get("Range"); rg != "" {
				n.ranges = append(n.ranges, name+" "+rg)
			}
		}
		f := n.fault[name]
		delete(n.fault, name)
		n.mu.Unlock()
		if f != nil {
			f(w, r)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(n.srv.Close)
	return n
}

// hour writes an hour of flows (100 records) and moves the clock on, which
// seals the segment at the next write.
func (n *node) hour(t *testing.T, i int) {
	t.Helper()
	var recs []flow.Record
	for j := range 100 {
		start := n.clk.Now().Add(time.Duration(j) * time.Second)
		recs = append(recs, flow.Record{Start: start, End: start.Add(time.Second), Proto: 6,
			Orig:      flow.Tuple{Src: netip.AddrPortFrom(netip.MustParseAddr("10.244.1.5"), uint16(1000+j)), Dst: netip.MustParseAddrPort("198.51.100.7:443")},
			Reply:     flow.Tuple{Src: netip.MustParseAddrPort("198.51.100.7:443"), Dst: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), uint16(1000+j))},
			OrigBytes: uint64(i*1000 + j), OrigPackets: 1, Slice: "plc.a.b", Sliver: "ns/p", PodUID: "u"})
	}
	if err := n.store.Add(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	n.clk.Add(time.Hour + time.Minute)
}

// TestFetchFromAnAgent runs the archiver against a node agent's segment
// server whose tokens a real API server checks: strangers are refused; the
// archiver's downloads are incremental, resume where a cut one stopped
// without duplicating, refuse a corrupt segment and fetch it again, and
// say how many segments the node pruned before they were archived.
func TestFetchFromAnAgent(t *testing.T) {
	env := testenv.Start(t, filepath.Join("..", "..", ".."))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, name := range []string{"planetkube-manager", "stranger"} {
		if err := env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	n := newNode(t, segments.TokenReviewer{Client: env.Client}, []string{"system:serviceaccount:default:planetkube-manager"})
	for i := range 4 {
		n.hour(t, i) // three sealed segments and an open one
	}
	if got := len(n.store.Sealed()); got != 3 {
		t.Fatalf("%d sealed segments, want 3", got)
	}
	dir := t.TempDir()
	archiver := &Fetcher{Dir: dir, Tokens: &ServiceAccountTokens{Client: env.Client, Namespace: "default", Name: "planetkube-manager"}}

	// Only the archiver may download.
	for _, c := range []struct {
		name   string
		tokens TokenSource
		want   string
	}{
		{"a stranger's ServiceAccount", &ServiceAccountTokens{Client: env.Client, Namespace: "default", Name: "stranger"}, "403 Forbidden"},
		{"the manager's token for the API server", apiToken{env, "planetkube-manager"}, "401 Unauthorized"},
		{"a made-up token", staticToken("not-a-token"), "401 Unauthorized"},
		{"no token", staticToken(""), "401 Unauthorized"},
	} {
		f := &Fetcher{Dir: t.TempDir(), Tokens: c.tokens}
		if _, err := f.Sync(ctx, "node-a", n.srv.URL); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %s", c.name, err, c.want)
		}
	}

	// A download cut half way: the sync fails, the part is kept, and the
	// next sync asks for the rest only.
	first := n.store.Sealed()[0]
	log0 := store.SegmentFileName(first.Seq, "log")
	n.mu.Lock()
	n.fault[log0] = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(first.DataBytes))
		w.WriteHeader(http.StatusOK)
		df, _, err := n.store.OpenSealed(first.Seq)
		if err != nil {
			t.Error(err)
			return
		}
		defer df.Close()
		b := make([]byte, first.DataBytes/2)
		_, _ = df.ReadAt(b, 0)
		_, _ = w.Write(b)
		w.(http.Flusher).Flush()    // the client has the headers and half the body
		panic(http.ErrAbortHandler) // when the connection drops
	}
	// The second segment's index arrives with a byte flipped, once.
	second := n.store.Sealed()[1]
	idx1 := store.SegmentFileName(second.Seq, "idx")
	n.fault[idx1] = func(w http.ResponseWriter, r *http.Request) {
		_, xf, err := n.store.OpenSealed(second.Seq)
		if err != nil {
			t.Error(err)
			return
		}
		defer xf.Close()
		b := make([]byte, second.IndexBytes)
		_, _ = xf.ReadAt(b, 0)
		b[len(b)/2] ^= 1
		_, _ = w.Write(b)
	}
	n.mu.Unlock()
	if res, err := archiver.Sync(ctx, "node-a", n.srv.URL); err == nil {
		t.Fatalf("a sync whose download was cut succeeded: %+v, files %d, ranges %v", res, n.files, n.ranges)
	}
	part, err := os.Stat(filepath.Join(dir, "node-a", log0+partSuffix))
	if err != nil || part.Size() != first.DataBytes/2 {
		t.Fatalf("the cut download's part: %v, %v; want %d bytes kept", part, err, first.DataBytes/2)
	}
	res, err := archiver.Sync(ctx, "node-a", n.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if res.Fetched != 2 || res.Corrupt != 1 {
		t.Errorf("second sync %+v, want 2 fetched and 1 corrupt", res)
	}
	n.mu.Lock()
	ranges := slices.Clone(n.ranges)
	n.mu.Unlock()
	if want := fmt.Sprintf("%s bytes=%d-", log0, first.DataBytes/2); !slices.Contains(ranges, want) {
		t.Errorf("Range requests %q, want %q (resumed)", ranges, want)
	}
	res, err = archiver.Sync(ctx, "node-a", n.srv.URL)
	if err != nil || res.Fetched != 1 || res.Corrupt != 0 {
		t.Errorf("third sync %+v, %v; want the corrupt segment fetched again", res, err)
	}
	checkArchived(t, filepath.Join(dir, "node-a"), n.store.Sealed())

	// Incremental: nothing new is nothing downloaded.
	n.mu.Lock()
	before := n.files
	n.mu.Unlock()
	if res, err := archiver.Sync(ctx, "node-a", n.srv.URL); err != nil || res != (Result{}) {
		t.Errorf("a sync with nothing new: %+v, %v", res, err)
	}
	n.mu.Lock()
	if n.files != before {
		t.Errorf("a sync with nothing new downloaded %d files", n.files-before)
	}
	n.mu.Unlock()

	// The node seals three more hours and prunes (3 h retention) before the
	// archiver comes back: what it pruned unarchived is said missed.
	for i := 4; i < 8; i++ {
		n.hour(t, i)
	}
	if _, err := n.store.Prune(ctx, n.clk.Now()); err != nil {
		t.Fatal(err)
	}
	sealed := n.store.Sealed()
	newest := newestArchived(t, filepath.Join(dir, "node-a"))
	res, err = archiver.Sync(ctx, "node-a", n.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if want := int(sealed[0].Seq - newest - 1); res.Missed != want || want == 0 || res.Fetched != len(sealed) {
		t.Errorf("sync after pruning %+v; want %d missed and %d fetched", res, want, len(sealed))
	}

	// The Archiver finds the agent by its pod (Running, on the host
	// network of node-a) and archives into a new directory what the node
	// holds, counting it per node.
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "agents"}}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "agents", Name: "agent-a", Labels: map[string]string{"app.kubernetes.io/component": "node-agent"}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "agent", Image: "planetkube"}}}}
	if err := env.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.1", PodIPs: []corev1.PodIP{{IP: "127.0.0.1"}}}
	if err := env.Client.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(n.srv.URL[strings.LastIndex(n.srv.URL, ":")+1:])
	m := NewMetrics()
	a := &Archiver{Fetcher: &Fetcher{Dir: t.TempDir(), Tokens: archiver.Tokens}, Targets: fanout.PodTargets(env.Client, "agents", nil, port), Metrics: m}
	a.Once(ctx)
	if got := testutil.ToFloat64(m.Segments.WithLabelValues("node-a")); got != float64(len(sealed)) {
		t.Errorf("the Archiver archived %v segments of node-a, want %d", got, len(sealed))
	}
	checkArchived(t, filepath.Join(a.Fetcher.Dir, "node-a"), sealed)

	// node-a seals two more hours and writes a third; the sync fetches the
	// first and fails on the second. Then node-a leaves the cluster: what
	// its agent last listed that the archive lacks (one sealed segment and
	// the one being written, 100 records each) is told, once, and kept
	// across a restart of the archiver.
	if err := env.Client.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}); err != nil {
		t.Fatal(err)
	}
	a.Nodes = ClusterNodes(env.Client)
	n.hour(t, 8)
	n.hour(t, 9)
	n.hour(t, 10)
	sealed = n.store.Sealed()
	n.mu.Lock()
	n.fault[store.SegmentFileName(sealed[len(sealed)-1].Seq, "log")] = func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}
	n.mu.Unlock()
	a.Once(ctx)
	lost := func(m *Metrics) (float64, float64) {
		return testutil.ToFloat64(m.LostSegments.WithLabelValues("node-a")), testutil.ToFloat64(m.LostRecords.WithLabelValues("node-a"))
	}
	if got := testutil.ToFloat64(m.Errors.WithLabelValues("node-a")); got != 1 {
		t.Fatalf("%v failed syncs of node-a, want the one cut", got)
	}
	if segs, recs := lost(m); segs != 0 || recs != 0 {
		t.Errorf("node-a, still a node, lost %v segments and %v records", segs, recs)
	}
	if err := env.Client.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil { // no kubelet here to end it
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}); err != nil {
		t.Fatal(err)
	}
	a.Once(ctx) // the cluster lists no node at all: not an answer to believe
	if segs, recs := lost(m); segs != 0 || recs != 0 {
		t.Errorf("with no node listed, node-a lost %v segments and %v records; want nothing told", segs, recs)
	}
	if err := env.Client.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b"}}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // told once, not once per sync
		a.Once(ctx)
		if segs, recs := lost(m); segs != 2 || recs != 200 {
			t.Errorf("node-a left: lost %v segments and %v records, want 2 and 200", segs, recs)
		}
	}
	restarted := &Archiver{Fetcher: a.Fetcher, Targets: a.Targets, Nodes: a.Nodes, Metrics: NewMetrics()}
	restarted.Once(ctx)
	if segs, recs := lost(restarted.Metrics); segs != 2 || recs != 200 {
		t.Errorf("after a restart, node-a lost %v segments and %v records, want 2 and 200", segs, recs)
	}
}

// checkArchived checks that the archive holds each segment once, whole and
// verified, and no part files.
func checkArchived(t *testing.T, dir string, want []store.SegmentInfo) {
	t.Helper()
	got, _ := Archived(dir)
	if len(got) != len(want) {
		t.Fatalf("archived %v, want %d segments", got, len(want))
	}
	for i, sg := range want {
		if got[i] != sg.Seq {
			t.Fatalf("archived %v, want segment %d", got, sg.Seq)
		}
		data, err1 := os.ReadFile(filepath.Join(dir, store.SegmentFileName(sg.Seq, "log")))
		idx, err2 := os.ReadFile(filepath.Join(dir, store.SegmentFileName(sg.Seq, "idx")))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if info, err := store.Verify(sg.Seq, data, idx); err != nil || info != sg {
			t.Errorf("archived segment %d: %+v, %v; want %+v", sg.Seq, info, err, sg)
		}
	}
	parts, _ := filepath.Glob(filepath.Join(dir, "*"+partSuffix))
	if len(parts) != 0 {
		t.Errorf("part files left: %v", parts)
	}
}

// newestArchived is the newest archived segment of dir.
func newestArchived(t *testing.T, dir string) uint64 {
	t.Helper()
	got, err := Archived(dir)
	if err != nil || len(got) == 0 {
		t.Fatalf("archived %v, %v", got, err)
	}
	return got[len(got)-1]
}

// staticToken is a token the test makes up (or none).
type staticToken string

func (s staticToken) Token(context.Context) (string, error) { return string(s), nil }

// apiToken is a ServiceAccount's token for the API server's own audience.
type apiToken struct {
	env  testenv.Started
	name string
}

func (a apiToken) Token(ctx context.Context) (string, error) {
	tr := &authenticationv1.TokenRequest{}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: a.name}}
	if err := a.env.Client.SubResource("token").Create(ctx, sa, tr); err != nil {
		return "", err
	}
	return tr.Status.Token, nil
}

// staticAuth accepts one token as one user (the TokenReview is tested
// above).
type staticAuth struct{ token, user string }

func (a staticAuth) Authenticate(_ context.Context, token string) (string, error) {
	if token != a.token {
		return "", segments.ErrUnauthenticated
	}
	return a.user, nil
}

// TestFetchOverTLS: with TLS, the Archiver makes the CA and the agents'
// certificate in a Secret of a real API server, asks the agent at https://
// (its pod's plain address rewritten), and archives; a Fetcher with TLS
// refuses an agent's plain HTTP address, and one trusting another CA is
// refused by the agent's certificate.
func TestFetchOverTLS(t *testing.T) {
	env := testenv.Start(t, filepath.Join("..", "..", ".."))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := newNode(t, staticAuth{"archiver-token", "archiver"}, []string{"archiver"})
	for i := range 3 {
		n.hour(t, i)
	}
	plainURL := n.srv.URL
	h := n.srv.Config.Handler
	certDir := t.TempDir()
	tlsSrv := httptest.NewUnstartedServer(h)
	tlsSrv.TLS = archivetls.ServerConfig(certDir)
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	// The agent's pod address, as PodTargets gives it: http://IP:port.
	podURL := "http://" + strings.TrimPrefix(tlsSrv.URL, "https://")

	secure := func(ctx context.Context) (*tls.Config, error) {
		cas, err := archivetls.Ensure(ctx, env.Client, "default", time.Now())
		if err != nil {
			return nil, err
		}
		return archivetls.ClientConfig(cas), nil
	}
	a := &Archiver{
		Fetcher: &Fetcher{Dir: t.TempDir(), Tokens: staticToken("archiver-token")},
		Targets: fanout.StaticTargets(fanout.Target{Node: "node-a", URL: podURL}),
		TLS:     secure, Metrics: NewMetrics(),
	}
	a.Once(ctx) // makes the Secret; the agent has no certificate yet: refused
	if got := testutil.ToFloat64(a.Metrics.Errors.WithLabelValues("node-a")); got != 1 {
		t.Errorf("%v failed syncs before the agent had its certificate, want 1", got)
	}
	s := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: archivetls.SecretName}, s); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{archivetls.KeyCert, archivetls.KeyCertPK} { // as the kubelet mounts them
		if err := os.WriteFile(filepath.Join(certDir, k), s.Data[k], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a.Once(ctx)
	if got := testutil.ToFloat64(a.Metrics.Segments.WithLabelValues("node-a")); got != 2 {
		t.Errorf("archived %v segments over TLS, want 2", got)
	}
	checkArchived(t, filepath.Join(a.Fetcher.Dir, "node-a"), n.store.Sealed())

	cfg, err := secure(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := &Fetcher{Dir: t.TempDir(), Tokens: staticToken("archiver-token"), TLS: cfg}
	if _, err := f.Sync(ctx, "node-a", plainURL); err == nil || !strings.Contains(err.Error(), "TLS is required") {
		t.Errorf("a plain address with TLS: %v", err)
	}
	other := t.TempDir()
	stranger := &Fetcher{Dir: other, Tokens: staticToken("archiver-token"), TLS: &tls.Config{ServerName: archivetls.ServerName, MinVersion: tls.VersionTLS13}}
	if _, err := stranger.Sync(ctx, "node-a", tlsSrv.URL); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("trusting another CA (the system's): %v", err)
	}
}

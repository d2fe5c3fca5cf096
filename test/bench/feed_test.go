package bench

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/controllers"
	"github.com/planetkube/planetkube/internal/federation"
	"github.com/planetkube/planetkube/internal/federation/feed"
	"github.com/planetkube/planetkube/internal/naming"
	"github.com/planetkube/planetkube/internal/testing/emulator"
	"github.com/planetkube/planetkube/internal/ticket"
)

const (
	feedHeading = "## Federation feed at scale (issue 26)"
	// feedHome is the authority whose feed is polled, feedSite the site of
	// its slices.
	feedHome, feedSite = "plc", "fa"
	// feedPollsPerHour: a peer polls every 600 s (the default interval;
	// the random 0–301 s added to it only spreads the polls out).
	feedPollsPerHour = 6
	// feedTargetPeers is the issue's number of peers, feedCPUTarget its
	// bound on the feed's CPU (% of one core) for them.
	feedTargetPeers = 1000
	feedCPUTarget   = 1.0
	// feedWholeEverySeconds is how often the poller reads a feed whole at
	// least (pull's wholeFeedEvery).
	feedWholeEverySeconds = 3600
	// feedWarmup polls come before the measured windows.
	feedWarmup = 20
	// feedMaxSecretBytes is the API server's bound on a Secret's data.
	feedMaxSecretBytes = 1 << 20
)

var (
	feedSlices      = flag.Int("feed-slices", 1000, "slices in each answer of the feed benchmark (the documented figures use 1000)")
	feedPeers       = flag.Int("feed-peers", 1000, "peer authorities polling the feed in the feed benchmark (the documented figures use 1000)")
	feedPairs       = flag.Int("feed-pairs", 3, "alternating idle/poll window pairs of the feed benchmark")
	feedConcurrency = flag.Int("feed-concurrency", 1, "polls in flight at once in the feed benchmark's poll windows (1: one after the other)")
)

// feedWindowPair is one idle window and one poll window of the feed
// benchmark: the manager's CPU time over each (and the API server's and
// etcd's, which the feed should not need).
type feedWindowPair struct {
	pollFirst              bool
	polls                  int
	pollWall, idleWall     time.Duration
	pollCPU, idleCPU       time.Duration
	pollCtlCPU, idleCtlCPU time.Duration
}

// net returns the CPU time of the poll window less the idle window's,
// scaled to the poll window's length.
func (p feedWindowPair) net(poll, idle time.Duration) time.Duration {
	return poll - time.Duration(float64(idle)*p.pollWall.Seconds()/p.idleWall.Seconds())
}

// perPoll is the manager's CPU time per poll.
func (p feedWindowPair) perPoll() time.Duration {
	return p.net(p.pollCPU, p.idleCPU) / time.Duration(p.polls)
}

// ctlPerPoll is the API server's and etcd's CPU time per poll.
func (p feedWindowPair) ctlPerPoll() time.Duration {
	return p.net(p.pollCtlCPU, p.idleCtlCPU) / time.Duration(p.polls)
}

// feedResult holds the feed benchmark's figures.
type feedResult struct {
	slices, peers, concurrency int
	// ticketBytes is a ticket's size, secretBytes a slice's tickets'
	// Secret's data (one ticket per peer); setup how long writing them took.
	ticketBytes, secretBytes int
	setup                    time.Duration
	pairs                    []feedWindowPair
	// polls are every measured poll answered whole.
	polls []feedPoll
	// unchangedPairs and unchangedPolls: the same, for peers that hold
	// the feed's version and are told Unchanged.
	unchangedPairs []feedWindowPair
	unchangedPolls []feedPoll
	// requestToken is the size of a signed request token.
	requestToken int
	// gzip*: the size of one answer's body gzipped, and the time that took
	// here, at the default level and at BestSpeed.
	gzipDefault, gzipFast       int
	gzipDefaultCPU, gzipFastCPU time.Duration
	proto, encoding, tlsVersion string
	rss, rssNow                 int64
	profileSeconds              int
	profileTop                  string
	machine                     machine
	command                     string
}

// TestFeedScaleBench measures one authority's federation feed as its peers
// poll it: the real manager (bin/planetkube) serving its feed over HTTPS on
// loopback, -feed-peers peer authorities (each an Authority with its own
// key) polling it with signed requests through feed.Fetch, as the poller
// does, and each answer carrying -feed-slices sliver tickets. It reports the
// manager's CPU time per poll (poll windows less idle windows, alternating),
// extrapolated to 1,000 peers polling every 600 s, what a poll costs in
// bytes, and its latency.
func TestFeedScaleBench(t *testing.T) {
	if *benchOut == "" {
		t.Skip("Skipping the benchmarks: no -bench-out file given (run `make bench`)")
	}
	if *feedPairs < 1 || *feedPeers < 1 || *feedSlices < 1 {
		t.Fatal("-feed-pairs, -feed-peers and -feed-slices must be at least 1")
	}
	binDir := findBinDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	res := &feedResult{slices: *feedSlices, peers: *feedPeers, concurrency: max(1, *feedConcurrency), command: feedCommand()}

	c, err := emulator.Start(ctx, emulator.Options{
		BinDir: binDir, WorkDir: filepath.Join(os.TempDir(), "planetkube-bench-feed"),
		Nodes: -1, Sites: []string{feedSite}, Log: testWriter{t},
	})
	if err != nil {
		t.Fatalf("Starting the emulated cluster: %v", err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	if err := c.InstallPlanetKube(ctx); err != nil {
		t.Fatal(err)
	}
	home := ticket.NewSigner(feedHome, ed25519.NewKeyFromSeed([]byte(strings.Repeat("p", ed25519.SeedSize))))
	if err := c.PutAuthorityKey(ctx, feedHome, home.Key); err != nil {
		t.Fatal(err)
	}
	k8s, err := newClient(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	peers := feedPeerSigners(res.peers)
	began := time.Now()
	if err := createFeedPeers(ctx, k8s, peers); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d peer Authorities made in %s", len(peers), time.Since(began).Round(time.Millisecond))
	began = time.Now()
	if res.ticketBytes, res.secretBytes, err = writeFeedSecrets(ctx, t, c.Client, home, peers, res.slices); err != nil {
		t.Fatal(err)
	}
	res.setup = time.Since(began)
	t.Logf("%d tickets' Secrets (%d tickets of %d bytes, %d bytes of data each) written in %s",
		res.slices, res.peers, res.ticketBytes, res.secretBytes, res.setup.Round(time.Millisecond))

	// The manager starts with everything there: its caches list it all.
	args, err := c.FeedArgs()
	if err != nil {
		t.Fatal(err)
	}
	pprofPort, err := freeLocalPort()
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := c.StartPlanetKube(ctx, append(args, "--authority="+feedHome, "--pprof-bind-address=127.0.0.1:"+strconv.Itoa(pprofPort))...)
	if err != nil {
		t.Fatalf("Starting the manager: %v", err)
	}
	_, _, ca, err := c.FeedServing()
	if err != nil {
		t.Fatal(err)
	}
	fp, err := newFeedPoller(c.FeedURL(), ca, home)
	if err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	if err := fp.waitFull(ctx, peers[0], res.slices); err != nil {
		t.Fatalf("The feed never served %s all %d tickets: %v; manager log:\n%s", peers[0].Authority, res.slices, err, mgr.LogTail(20))
	}
	t.Logf("The feed serves %d tickets to each peer, %s after the manager's start", res.slices, time.Since(began).Round(time.Millisecond))

	if err := feedSettle(ctx, t, mgr); err != nil {
		t.Fatal(err)
	}
	if err := runFeedWindows(ctx, t, c, mgr, fp, peers, res, nil, &res.pairs); err != nil {
		t.Fatal(err)
	}
	// Peers that hold the version of the feed they followed: one whole
	// versioned answer each, then windows of Unchanged answers.
	versions := make([]string, len(peers))
	primed, err := fp.burst(ctx, peers, res.concurrency, res.slices, func(int) string { return feed.HaveNone })
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range primed {
		versions[i] = p.version
	}
	if err := runFeedWindows(ctx, t, c, mgr, fp, peers, res, func(i int) string { return versions[i] }, &res.unchangedPairs); err != nil {
		t.Fatal(err)
	}
	if res.rss, err = mgr.PeakRSSBytes(); err != nil {
		t.Fatalf("Reading the manager's peak RSS: %v", err)
	}
	if res.rssNow, err = mgr.RSSBytes(); err != nil {
		t.Fatalf("Reading the manager's RSS: %v", err)
	}
	prof := profiler{port: pprofPort, dir: filepath.Join(c.LogDir, "profiles")}
	if err := feedProfile(ctx, t, prof, fp, peers, res); err != nil {
		t.Logf("No CPU profile of the feed: %v", err) // the figures stand without it
	}
	reportManagerErrors(t, mgr)
	res.machine = describeMachine()
	if err := writeSection(*benchOut, feedHeading, res.markdown()); err != nil {
		t.Fatalf("Writing %s: %v", *benchOut, err)
	}
	t.Logf("Wrote %s:\n%s", *benchOut, res.markdown())
}

// feedCommand is the command that reruns the benchmark as it ran.
func feedCommand() string {
	var extra []string
	flag.Visit(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, "feed-") {
			extra = append(extra, "-"+f.Name+"="+f.Value.String())
		}
	})
	slices.Sort(extra)
	return strings.Join(append([]string{"go test ./test/bench/ -run TestFeedScaleBench -v -timeout 60m -args -bench-out=$PWD/docs/benchmarks.md"}, extra...), " ")
}

// feedPeerSigners returns n peer authorities (peer0000 ...), each with a
// key of its own.
func feedPeerSigners(n int) []ticket.Signer {
	out := make([]ticket.Signer, n)
	for i := range out {
		name := fmt.Sprintf("peer%04d", i)
		seed := sha256.Sum256([]byte("feed-bench " + name))
		out[i] = ticket.NewSigner(name, ed25519.NewKeyFromSeed(seed[:]))
	}
	return out
}

// createFeedPeers makes each peer's Authority at the home, as an operator
// federating with it does: its public key (the home does not poll it).
func createFeedPeers(ctx context.Context, k8s client.Client, peers []ticket.Signer) error {
	return runParallel(8, len(peers), func(i int) error {
		p := peers[i]
		return k8s.Create(ctx, &planetv1.Authority{
			ObjectMeta: metav1.ObjectMeta{Name: p.Authority},
			Spec: planetv1.AuthoritySpec{Keys: []planetv1.AuthorityKey{{
				ID: p.KeyID, PublicKey: ticket.EncodePublicKey(p.Key.Public().(ed25519.PublicKey)),
			}}},
		})
	})
}

// feedSlice is the home slice i: a typical one, with a description, a URL,
// a user with an SSH key, one site and at most 10 nodes.
func feedSlice(i int) (*planetv1.Slice, string) {
	s := &planetv1.Slice{}
	s.Namespace, s.Name = feedSite, fmt.Sprintf("fs%04d", i)
	s.Spec.Description = fmt.Sprintf("Slice %d of the feed benchmark: a content distribution network measured from every site", i)
	s.Spec.URL = "https://" + feedSite + ".example.org/slices/" + s.Name
	s.Spec.Users = []planetv1.SliceUser{{Name: "alice@" + feedSite + ".example.org",
		SSHKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq5c2Zm0l3l7Yc1x8Qe9nJrY5v1Zk2bWcQb7dXr9Z0a alice@laptop"}}}
	s.Spec.Nodes.Sites = []string{feedSite}
	s.Spec.Nodes.MaxNodes = ptr.To[int32](10)
	s.Spec.Nodes.Authorities = []string{"peer0000"} // dropped from the grant, as the federation controller does
	s.Spec.Template = planetv1.SliverTemplate{Image: pauseImage}
	s.Spec.CPUShare = 1
	s.Spec.PodSecurity = planetv1.PodSecurityBaseline
	return s, naming.FullName(feedHome, feedSite, s.Name)
}

// writeFeedSecrets writes, for each of n home slices, the Secret of its
// tickets as the federation controller keeps it (name, labels, a ticket
// per peer signed with the home's key from federation.Grant and
// federation.Claims, each with its grant hash), without the annotation
// that names its slice: the slices do not exist (a slice names at most 16
// peers), and the federation controller withdraws the tickets of a slice
// that is gone. The feed reads the Secrets by their label only. It returns
// a ticket's size and a Secret's data size.
func writeFeedSecrets(ctx context.Context, t *testing.T, cs kubernetes.Interface, home ticket.Signer, peers []ticket.Signer, n int) (int, int, error) {
	t.Helper()
	expires := time.Now().Add(14 * 24 * time.Hour)
	var ticketBytes, secretBytes atomic.Int64
	var done atomic.Int32
	err := runParallel(4, n, func(i int) error {
		s, full := feedSlice(i)
		grant := federation.Grant(s, full, expires)
		data := make(map[string][]byte, len(peers))
		annotations := make(map[string]string, len(peers))
		size := 0
		now := time.Now()
		for _, p := range peers {
			token, err := home.Issue(federation.Claims(p.Authority, grant, now, feedJTI()))
			if err != nil {
				return fmt.Errorf("signing the ticket of %s for %s: %w", full, p.Authority, err)
			}
			data[p.Authority] = []byte(token)
			annotations["grant.planetkube.io/"+p.Authority] = federation.GrantHash(p.Authority, grant)
			size += len(p.Authority) + len(token)
			ticketBytes.Store(int64(len(token)))
		}
		secretBytes.Store(int64(size))
		if size > feedMaxSecretBytes {
			return fmt.Errorf("the tickets' Secret of a slice holds one ticket per peer: at %d peers it has %d bytes of data, over the API server's bound of %d: "+
				"the federation controller's layout (one Secret per slice, controllers.FederationTicketsSecret) cannot offer a slice to that many peers", len(peers), size, feedMaxSecretBytes)
		}
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: emulator.ManagerNamespace, Name: controllers.FederationTicketsSecret(full),
				Labels:      map[string]string{planetv1.LabelManagedBy: planetv1.ManagedByValue, planetv1.LabelFederationTickets: "true"},
				Annotations: annotations,
			},
			Type: corev1.SecretTypeOpaque,
			Data: data,
		}
		if _, err := cs.CoreV1().Secrets(emulator.ManagerNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating the tickets' Secret of %s: %w", full, err)
		}
		if d := done.Add(1); d%100 == 0 {
			t.Logf("%d of %d tickets' Secrets written", d, n)
		}
		return nil
	})
	return int(ticketBytes.Load()), int(secretBytes.Load()), err
}

// feedJTI returns 128 random bits in hex, as the federation controller
// makes ticket ids.
func feedJTI() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// feedPoller polls the home's feed as a peer's poller does: a new HTTPS
// client per poll (TLS 1.2 or later, the feed's CA, no proxy, no
// redirects), feed.Fetch, and the idle connection closed after it; around
// it, it counts the bytes on the wire and times the poll.
type feedPoller struct {
	url      string
	roots    *x509.CertPool
	homeKeys []ticket.Key
}

func newFeedPoller(url string, ca []byte, home ticket.Signer) (*feedPoller, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return nil, errors.New("the feed's CA holds no PEM certificate")
	}
	pub := home.Key.Public().(ed25519.PublicKey)
	return &feedPoller{url: url, roots: roots, homeKeys: []ticket.Key{{ID: ticket.KeyID(pub), Public: pub}}}, nil
}

// feedPoll is what one poll cost.
type feedPoll struct {
	// latency is the whole poll (connection, TLS handshake, request,
	// answer, the feed's signature checked); ttfb from the request sent
	// to the answer's first byte (the home's work).
	latency, ttfb time.Duration
	// hsUp and hsDown are the bytes on the wire (TCP payload) each way
	// until the TLS handshake is done, up and down all of them.
	hsUp, hsDown, up, down int64
	// body is the answer's body (the feed JWS), tickets how many it lists.
	body    int64
	tickets int
	// proto, encoding and tlsVersion: the answer's protocol, its
	// Content-Encoding, the connection's TLS version.
	proto, encoding string
	tlsVersion      uint16
	// kept is the body, when asked for.
	kept []byte
	// version and unchanged: the answer's version, and whether it said
	// the tickets are the version the request had.
	version   string
	unchanged bool
}

// countingConn counts the bytes a connection reads and writes.
type countingConn struct {
	net.Conn
	up, down *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.down.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.up.Add(int64(n))
	return n, err
}

// feedRoundTripper notes the answer's protocol and encoding and counts
// (and may keep) its body.
type feedRoundTripper struct {
	rt   http.RoundTripper
	st   *feedPoll
	keep bool
}

func (f *feedRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := f.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	f.st.proto, f.st.encoding = resp.Proto, resp.Header.Get("Content-Encoding")
	if resp.Uncompressed {
		f.st.encoding = "gzip"
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, st: f.st, keep: f.keep}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	st   *feedPoll
	keep bool
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.st.body += int64(n)
	if b.keep {
		b.st.kept = append(b.st.kept, p[:n]...)
	}
	return n, err
}

// poll polls the feed once as peer s, holding version have ("" asks for
// no version, as an older peer).
func (fp *feedPoller) poll(ctx context.Context, s ticket.Signer, have string, keep bool) (feedPoll, error) {
	st := &feedPoll{}
	var up, down atomic.Int64
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: fp.roots},
		Proxy:           nil, MaxIdleConns: 1, IdleConnTimeout: time.Minute,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &countingConn{Conn: conn, up: &up, down: &down}, nil
		},
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{
		Transport:     &feedRoundTripper{rt: tr, st: st, keep: keep},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	var wrote, first time.Time
	trace := &httptrace.ClientTrace{
		TLSHandshakeDone: func(cs tls.ConnectionState, _ error) {
			st.hsUp, st.hsDown, st.tlsVersion = up.Load(), down.Load(), cs.Version
		},
		WroteRequest:         func(httptrace.WroteRequestInfo) { wrote = time.Now() },
		GotFirstResponseByte: func() { first = time.Now() },
	}
	ctx, cancel := context.WithTimeout(httptrace.WithClientTrace(ctx, trace), 30*time.Second)
	defer cancel()
	began := time.Now()
	f, err := feed.Fetch(ctx, hc, fp.url, s, feedHome, fp.homeKeys, have, ticket.DefaultSkew, nil)
	st.latency = time.Since(began)
	if err != nil {
		return *st, fmt.Errorf("%s polling the feed: %w", s.Authority, err)
	}
	st.ttfb, st.up, st.down, st.tickets = first.Sub(wrote), up.Load(), down.Load(), len(f.Tickets)
	st.version, st.unchanged = f.Version, f.Unchanged
	return *st, nil
}

// waitFull polls as peer s until the feed lists want tickets (the manager's
// cache has them all).
func (fp *feedPoller) waitFull(ctx context.Context, s ticket.Signer, want int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	var last error
	for {
		st, err := fp.poll(ctx, s, "", false)
		switch {
		case err != nil:
			last = err
		case st.tickets == want:
			return nil
		default:
			last = fmt.Errorf("%d tickets", st.tickets)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(time.Second):
		}
	}
}

// burst polls once as each peer, conc at a time, peer i holding version
// have(i) (nil: none asked for), and checks that every answer lists want
// tickets, or says Unchanged for the version held; the first poll's body
// is kept.
func (fp *feedPoller) burst(ctx context.Context, peers []ticket.Signer, conc, want int, have func(int) string) ([]feedPoll, error) {
	out := make([]feedPoll, len(peers))
	err := runParallel(conc, len(peers), func(i int) error {
		h := ""
		if have != nil {
			h = have(i)
		}
		st, err := fp.poll(ctx, peers[i], h, i == 0)
		if err != nil {
			return err
		}
		switch {
		case feed.ValidVersion(h) && !st.unchanged:
			return fmt.Errorf("%s holding the feed's version got %d tickets, not Unchanged", peers[i].Authority, st.tickets)
		case !feed.ValidVersion(h) && st.tickets != want:
			return fmt.Errorf("%s got %d tickets, not %d", peers[i].Authority, st.tickets, want)
		}
		out[i] = st
		return nil
	})
	return out, err
}

// feedSettle waits until the manager is idle after its start (its
// Authorities reconciled): at most 5 % of a core over 5 s, for at most 3
// minutes.
func feedSettle(ctx context.Context, t *testing.T, mgr *emulator.Process) error {
	t.Helper()
	const window, busy = 5 * time.Second, 250 * time.Millisecond
	deadline := time.Now().Add(3 * time.Minute)
	for {
		c0, err := mgr.CPUTime()
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(window):
		}
		c1, err := mgr.CPUTime()
		if err != nil {
			return err
		}
		switch {
		case c1-c0 <= busy:
			t.Logf("The manager is idle: %s of CPU over %s", c1-c0, window)
			return nil
		case time.Now().After(deadline):
			t.Logf("The manager is still busy (%s of CPU over %s); measuring all the same", c1-c0, window)
			return nil
		}
	}
}

// controlPlaneCPU is the CPU time of the API server and etcd so far.
func controlPlaneCPU(c *emulator.Cluster) (time.Duration, error) {
	var sum time.Duration
	for _, p := range c.Processes() {
		if p.Name != "kube-apiserver" && p.Name != "etcd" {
			continue
		}
		d, err := p.CPUTime()
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// runFeedWindows warms the feed up, then alternates idle windows and poll
// windows (every peer polls once) over -feed-pairs pairs, the order
// reversing every other pair. An idle window after its pair's poll window
// lasts as long; one before it as long as the last poll window (the first,
// as the warm-up says); its CPU time is scaled to its pair's poll window.
//
// have gives the version each peer holds (nil: an older peer's polls, each
// answered whole); the pairs are appended to into, and the polls' figures
// to res.polls only for whole answers.
func runFeedWindows(ctx context.Context, t *testing.T, c *emulator.Cluster, mgr *emulator.Process, fp *feedPoller, peers []ticket.Signer, res *feedResult,
	have func(int) string, into *[]feedWindowPair) error {
	t.Helper()
	cpu := func() (time.Duration, time.Duration, error) {
		m, err := mgr.CPUTime()
		if err != nil {
			return 0, 0, err
		}
		ctl, err := controlPlaneCPU(c)
		return m, ctl, err
	}
	warm := peers[:min(feedWarmup, len(peers))]
	began := time.Now()
	if _, err := fp.burst(ctx, warm, res.concurrency, res.slices, have); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	estimate := time.Duration(float64(time.Since(began)) * float64(len(peers)) / float64(len(warm)))
	tok, _, err := feed.NewRequest(peers[0], feedHome, time.Now())
	if err != nil {
		return err
	}
	res.requestToken = len(tok)
	for pair := range *feedPairs {
		p := feedWindowPair{pollFirst: pair%2 == 1}
		idle := func(d time.Duration) error {
			m0, c0, err := cpu()
			if err != nil {
				return err
			}
			began := time.Now()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
			m1, c1, err := cpu()
			p.idleWall, p.idleCPU, p.idleCtlCPU = time.Since(began), m1-m0, c1-c0
			return err
		}
		poll := func() error {
			m0, c0, err := cpu()
			if err != nil {
				return err
			}
			began := time.Now()
			polls, err := fp.burst(ctx, peers, res.concurrency, res.slices, have)
			if err != nil {
				return err
			}
			m1, c1, err := cpu()
			p.pollWall, p.pollCPU, p.pollCtlCPU, p.polls = time.Since(began), m1-m0, c1-c0, len(polls)
			if have != nil {
				res.unchangedPolls = append(res.unchangedPolls, polls...)
				return nil
			}
			res.polls = append(res.polls, polls...)
			if pair == 0 {
				if err := res.noteAnswer(polls[0]); err != nil {
					return err
				}
			}
			return err
		}
		var err error
		if p.pollFirst {
			if err = poll(); err == nil {
				err = idle(p.pollWall)
			}
		} else {
			if err = idle(estimate); err == nil {
				err = poll()
			}
		}
		if err != nil {
			return fmt.Errorf("pair %d: %w", pair+1, err)
		}
		estimate = p.pollWall
		*into = append(*into, p)
		t.Logf("Pair %d: %d polls in %s, manager CPU %s (idle %s over %s): %s a poll; API server and etcd %s a poll",
			pair+1, p.polls, p.pollWall.Round(time.Millisecond), p.pollCPU, p.idleCPU, p.idleWall.Round(time.Millisecond),
			ms(p.perPoll()), ms(p.ctlPerPoll()))
	}
	return nil
}

// noteAnswer records what one answer is: its protocol, encoding, TLS
// version, and what its body would be gzipped.
func (r *feedResult) noteAnswer(st feedPoll) error {
	r.proto, r.encoding, r.tlsVersion = st.proto, st.encoding, tls.VersionName(st.tlsVersion)
	if r.encoding == "" {
		r.encoding = "none"
	}
	var err error
	if r.gzipDefault, r.gzipDefaultCPU, err = gzipCost(st.kept, gzip.DefaultCompression); err != nil {
		return err
	}
	r.gzipFast, r.gzipFastCPU, err = gzipCost(st.kept, gzip.BestSpeed)
	return err
}

// gzipCost returns the size of body gzipped at level, and the median time
// of five compressions.
func gzipCost(body []byte, level int) (int, time.Duration, error) {
	var times []time.Duration
	size := 0
	for range 5 {
		var b bytes.Buffer
		began := time.Now()
		w, err := gzip.NewWriterLevel(&b, level)
		if err != nil {
			return 0, 0, err
		}
		if _, err := w.Write(body); err != nil {
			return 0, 0, err
		}
		if err := w.Close(); err != nil {
			return 0, 0, err
		}
		times = append(times, time.Since(began))
		size = b.Len()
	}
	return size, percentile(times, 50), nil
}

// feedProfile takes the manager's CPU profile while the peers poll on (at
// the same concurrency), after the measured windows: where a poll's time
// goes.
func feedProfile(ctx context.Context, t *testing.T, prof profiler, fp *feedPoller, peers []ticket.Signer, res *feedResult) error {
	t.Helper()
	if err := os.MkdirAll(prof.dir, 0o755); err != nil {
		return err
	}
	last := res.pairs[len(res.pairs)-1].pollWall
	res.profileSeconds = int(min(30*time.Second, max(5*time.Second, last)) / time.Second)
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	polled := make(chan error, 1)
	go func() {
		for {
			if _, err := fp.burst(pctx, peers, res.concurrency, res.slices, nil); err != nil {
				if pctx.Err() != nil {
					err = nil
				}
				polled <- err
				return
			}
		}
	}()
	file, err := prof.fetch(ctx, "profile?seconds="+strconv.Itoa(res.profileSeconds), "feed-cpu.pprof")
	stop()
	if perr := <-polled; perr != nil {
		return perr
	}
	if err != nil {
		return err
	}
	res.profileTop, err = prof.top(ctx, file, "", 25, "-cum")
	return err
}

// markdown returns the body of the feed section.
func (r *feedResult) markdown() string {
	var b strings.Builder
	m := r.machine
	mode := "one after the other"
	if r.concurrency > 1 {
		mode = fmt.Sprintf("%d at a time", r.concurrency)
	}
	fmt.Fprintf(&b, "Command: `make bench` (alone: `%s`). Date: %s. Machine: %d CPUs (%s), Linux %s, %s.\n\n",
		r.command, m.date.Format("2006-01-02 15:04 MST"), m.cpus, m.cpuModel, m.kernel, m.goVersion)
	fmt.Fprintf(&b, "**Set-up.** One install (`%s`): an emulated cluster (etcd, kube-apiserver; no nodes) and the real manager (`bin/planetkube`) serving its feed over HTTPS on 127.0.0.1 (`--feed-bind-address`, a P-256 certificate of the cluster CA). "+
		"%s peer authorities, each an `Authority` at the home with a key of its own, poll it as a peer's poller does: a request signed with the peer's key (`feed.Fetch`, the poller's code), a new HTTPS client per poll (TLS 1.2 or later, the feed's CA, no proxy, no redirects; so a new TCP connection and a full TLS handshake each time, as with polls 10 minutes apart), the answer's signature, audience and request id checked. "+
		"Each answer lists %s sliver tickets (one per home slice, addressed to the peer, %s bytes each). "+
		"The tickets' Secrets are written by the benchmark in the federation controller's layout (one Secret per slice, one ticket per peer, signed with the home's key from `federation.Grant` and `federation.Claims` for a typical slice: a description, a URL, a user with an SSH key, one site, at most 10 nodes), because the controller cannot make this load: a slice names at most 16 peers (`spec.nodes.authorities`), so 1,000 answers of 1,000 tickets would need 62,500 slices. "+
		"They carry no slice-name annotation, so the federation controller (which would withdraw the tickets of a slice that does not exist) leaves them alone; the feed reads them by their label from the manager's cache, as it reads the controller's. "+
		"A slice's Secret holds %s bytes of tickets at %s peers (the API server's bound is 1,048,576: this layout offers a slice of this size to at most about %s peers). Writing the %s Secrets (%.0f MB of tickets) took %s.\n\n",
		feedHome, fmtThousands(r.peers), fmtThousands(r.slices), fmtThousands(r.ticketBytes), fmtThousands(r.secretBytes), fmtThousands(r.peers),
		fmtThousands(feedMaxSecretBytes/max(1, r.secretBytes/max(1, r.peers))), fmtThousands(r.slices),
		float64(r.secretBytes)*float64(r.slices)/1e6, seconds(r.setup))
	fmt.Fprintf(&b, "**CPU.** The manager's CPU time (`/proc/<pid>/stat`) over a poll window, in which each of the %s peers polls once (%s), less its CPU time over an idle window of the same length; %d pairs, the order reversing every other pair, after %d warm-up polls and once the manager is idle after its start:\n\n",
		fmtThousands(r.peers), mode, len(r.pairs), min(feedWarmup, r.peers))
	b.WriteString("| Pair | First | Polls | Poll window | Manager CPU, poll window | Manager CPU, idle window | CPU a poll | API server + etcd a poll |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	var perPoll, ctl []float64
	for i, p := range r.pairs {
		first := "idle"
		if p.pollFirst {
			first = "polls"
		}
		fmt.Fprintf(&b, "| %d | %s | %d | %s | %s | %s (over %s) | %s | %s |\n", i+1, first, p.polls, seconds(p.pollWall),
			seconds(p.pollCPU), seconds(p.idleCPU), seconds(p.idleWall), ms(p.perPoll()), ms(p.ctlPerPoll()))
		perPoll = append(perPoll, p.perPoll().Seconds())
		ctl = append(ctl, p.ctlPerPoll().Seconds())
	}
	pm, plo, phi := medianRange(perPoll)
	share := func(s float64) float64 { return s * feedTargetPeers * feedPollsPerHour / 3600 * 100 }
	cm, _, _ := medianRange(ctl)
	fmt.Fprintf(&b, "\nMedian **%.2f ms of CPU a poll answered whole** (%.2f–%.2f ms). If every poll of %s peers polling every 600 s (%s polls an hour) were answered whole with %d tickets "+
		"(older peers, which ask for no version, or tickets that change between every two polls): %.1f s of CPU an hour, %.2f %% of one core (%.2f–%.2f %%). "+
		"The API server and etcd: %.2f ms a poll (the feed reads the manager's caches, not the API server).\n\n",
		pm*1000, plo*1000, phi*1000, fmtThousands(feedTargetPeers), fmtThousands(feedTargetPeers*feedPollsPerHour), r.slices, pm*feedTargetPeers*feedPollsPerHour,
		share(pm), share(plo), share(phi), cm*1000)

	var unchanged []float64
	if len(r.unchangedPairs) > 0 {
		fmt.Fprintf(&b, "**Peers that hold the feed's version** (`%s`, this release's poller): the same windows, each peer sending the version of the whole feed it read just before, and answered Unchanged with no ticket (the home reads no Secret while none changed and no ticket expired):\n\n", feed.HaveHeader)
		b.WriteString("| Pair | First | Polls | Poll window | Manager CPU, poll window | Manager CPU, idle window | CPU a poll |\n|---|---|---:|---:|---:|---:|---:|\n")
		for i, p := range r.unchangedPairs {
			first := "idle"
			if p.pollFirst {
				first = "polls"
			}
			fmt.Fprintf(&b, "| %d | %s | %d | %s | %s | %s (over %s) | %s |\n", i+1, first, p.polls, seconds(p.pollWall),
				seconds(p.pollCPU), seconds(p.idleCPU), seconds(p.idleWall), ms(p.perPoll()))
			unchanged = append(unchanged, p.perPoll().Seconds())
		}
		um, ulo, uhi := medianRange(unchanged)
		// The poller reads a feed whole at least once an hour: one poll
		// in six whole, five Unchanged.
		wholePerHour := float64(3600) / feedWholeEverySeconds
		mix := func(whole, unch float64) float64 {
			return (whole*wholePerHour + unch*(feedPollsPerHour-wholePerHour)) * feedTargetPeers / 3600 * 100
		}
		verdict := "PASS"
		if mix(pm, um) > feedCPUTarget {
			verdict = "MISS"
		}
		downs := make([]time.Duration, len(r.unchangedPolls))
		for i, p := range r.unchangedPolls {
			downs[i] = time.Duration(p.down)
		}
		fmt.Fprintf(&b, "\nMedian **%.2f ms of CPU an Unchanged poll** (%.2f–%.2f ms), %s bytes home → peer (TLS handshake included). "+
			"The poller still reads each feed whole at least once an hour, so a peer polling every 600 s makes %d whole and %d Unchanged polls an hour: "+
			"for %s peers, %.1f s of CPU an hour, **%.2f %% of one core** (%.2f–%.2f %%); target ≤ %.0f %% — **%s**. "+
			"A change to the tickets' Secrets makes every peer's next poll whole (the home reads them again, once, for each peer).\n\n",
			um*1000, ulo*1000, uhi*1000, fmtThousands(int(percentile(downs, 50))), int(wholePerHour), int(feedPollsPerHour-wholePerHour),
			fmtThousands(feedTargetPeers), mix(pm, um)*36, mix(pm, um), mix(plo, ulo), mix(phi, uhi), feedCPUTarget, verdict)
	}

	med := func(f func(feedPoll) int64) int64 {
		xs := make([]time.Duration, len(r.polls))
		for i, p := range r.polls {
			xs[i] = time.Duration(f(p))
		}
		return int64(percentile(xs, 50))
	}
	body := med(func(p feedPoll) int64 { return p.body })
	hsUp, hsDown := med(func(p feedPoll) int64 { return p.hsUp }), med(func(p feedPoll) int64 { return p.hsDown })
	reqWire, respWire := med(func(p feedPoll) int64 { return p.up - p.hsUp }), med(func(p feedPoll) int64 { return p.down - p.hsDown })
	up, down := med(func(p feedPoll) int64 { return p.up }), med(func(p feedPoll) int64 { return p.down }) // medians of all polls
	fmt.Fprintf(&b, "**Bytes a poll** (medians of %d polls; TCP payload counted at the peer's socket, so TLS records included, TCP/IP headers not). %s over %s, answer `Content-Encoding`: %s (Go's client asks for gzip; the feed does not compress).\n\n",
		len(r.polls), r.tlsVersion, r.proto, r.encoding)
	b.WriteString("| What | Bytes |\n|---|---:|\n")
	fmt.Fprintf(&b, "| Request: the signed request token (`Authorization: %s …`) | %s |\n", feed.AuthScheme, fmtThousands(r.requestToken))
	fmt.Fprintf(&b, "| Request on the wire after the handshake (HTTP request in TLS records) | %s |\n", fmtThousands(int(reqWire)))
	fmt.Fprintf(&b, "| TLS handshake, peer → home / home → peer | %s / %s |\n", fmtThousands(int(hsUp)), fmtThousands(int(hsDown)))
	fmt.Fprintf(&b, "| Answer body (the feed JWS, %d tickets) | %s |\n", r.slices, fmtThousands(int(body)))
	fmt.Fprintf(&b, "| Answer on the wire after the handshake (headers, body, TLS records, session tickets) | %s |\n", fmtThousands(int(respWire)))
	fmt.Fprintf(&b, "| **Whole poll, peer → home / home → peer** | **%s / %s** |\n", fmtThousands(int(up)), fmtThousands(int(down)))
	fmt.Fprintf(&b, "| Answer body if gzipped (not done): default level / BestSpeed | %s (%.0f %%) / %s (%.0f %%) |\n\n",
		fmtThousands(r.gzipDefault), 100*float64(r.gzipDefault)/float64(max(1, body)), fmtThousands(r.gzipFast), 100*float64(r.gzipFast)/float64(max(1, body)))
	fmt.Fprintf(&b, "At %s peers every 600 s the home sends %.2f GB an hour (%.2f Mbit/s on average). Gzipping an answer would take %s of CPU at the default level, %s at BestSpeed (measured in the benchmark's process, one compression at a time), against %.2f ms for the whole poll at the manager now.\n\n",
		fmtThousands(feedTargetPeers), float64(down)*feedTargetPeers*feedPollsPerHour/1e9, float64(down)*8*feedTargetPeers*feedPollsPerHour/3600/1e6,
		ms(r.gzipDefaultCPU), ms(r.gzipFastCPU), pm*1000)

	lat := make([]time.Duration, len(r.polls))
	ttfb := make([]time.Duration, len(r.polls))
	for i, p := range r.polls {
		lat[i], ttfb[i] = p.latency, p.ttfb
	}
	fmt.Fprintf(&b, "**Latency a poll** (%d polls, %s): whole poll (connection, handshake, request, answer, its signature checked at the peer) p50 **%s**, p99 **%s**; from the request sent to the answer's first byte (the home's work: the request verified, the tickets listed, the feed signed) p50 %s, p99 %s. The peers run in the benchmark's process on the same CPUs as the manager.\n\n",
		len(r.polls), mode, ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(percentile(ttfb, 50)), ms(percentile(ttfb, 99)))
	fmt.Fprintf(&b, "Manager RSS with %s tickets in its cache of the tickets' Secrets: %.0f MiB after the windows, %.0f MiB at its peak (VmHWM, which includes its caches' first listing).\n",
		fmtThousands(r.slices*r.peers), float64(r.rssNow)/(1<<20), float64(r.rss)/(1<<20))
	if r.profileTop != "" {
		fmt.Fprintf(&b, "\n**Where a poll's time goes**: the manager's CPU profile over %d s of polling after the measured windows (`--pprof-bind-address`, `go tool pprof -top -cum`: each function with what it calls):\n\n```\n%s\n```\n", r.profileSeconds, r.profileTop)
	}
	return b.String()
}

// fmtThousands writes n with commas between thousands.
func fmtThousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

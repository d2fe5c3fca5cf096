// Package archive keeps the install's copy of every node's flow records past
// the node's retention (PlanetLab: "PLC archives this auditing information by
// periodically downloading the audit log"). The Fetcher downloads each
// node's sealed store segments (internal/flow/segments) into a directory
// per node: incrementally (only segments it lacks), resuming a cut download
// where it stopped, and verifying each segment's checksums before it counts
// as archived.
package archive

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/planetkube/planetkube/internal/durable"
	"github.com/planetkube/planetkube/internal/flow/segments"
	"github.com/planetkube/planetkube/internal/flow/store"
	"github.com/planetkube/planetkube/internal/naming"
)

// TokenSource gives the bearer token the archiver shows the agents.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// ServiceAccountTokens requests tokens of a ServiceAccount (the manager's
// own) for segments.Audience, short-lived, and reuses each until it is near
// its expiry. A token for that audience is worth nothing to the API server.
type ServiceAccountTokens struct {
	Client          client.Client
	Namespace, Name string

	mu      sync.Mutex
	token   string
	renewAt time.Time
}

// tokenSeconds is the lifetime asked for (the API server's minimum is 10 min).
const tokenSeconds = 600

// Token implements TokenSource.
func (s *ServiceAccountTokens) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && time.Now().Before(s.renewAt) {
		return s.token, nil
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{segments.Audience}, ExpirationSeconds: new(int64(tokenSeconds))}}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name}}
	if err := s.Client.SubResource("token").Create(ctx, sa, tr); err != nil {
		return "", fmt.Errorf("requesting a token of %s/%s for %s: %w", s.Namespace, s.Name, segments.Audience, err)
	}
	s.token = tr.Status.Token
	life := time.Until(tr.Status.ExpirationTimestamp.Time)
	s.renewAt = time.Now().Add(life * 8 / 10)
	return s.token, nil
}

// Fetcher downloads nodes' segments into Dir/<node>/.
type Fetcher struct {
	// Dir is the archive's root.
	Dir string
	// Client is the HTTP client (default: one with a 5 minute timeout and no
	// redirects).
	Client *http.Client
	// Tokens authenticates the fetcher to the agents.
	Tokens TokenSource
	// TLS, if set, is the configuration of the HTTPS connections to the
	// agents (archivetls.ClientConfig), and an agent's plain HTTP address
	// is refused: its token and segments would cross the node network in
	// the clear. Not used with Client.
	TLS *tls.Config

	mu           sync.Mutex
	transport    *http.Transport
	transportFor *tls.Config
}

// Result is what one Sync did.
type Result struct {
	// Fetched segments were verified and archived; Bytes is their size.
	Fetched int
	Bytes   int64
	// Corrupt segments failed verification: their download was deleted,
	// to be fetched again at the next sync.
	Corrupt int
	// Missed counts segments the node pruned before they were archived
	// (gaps in its numbering after the newest archived one).
	Missed int
}

// partSuffix marks a download in progress (kept to resume).
const partSuffix = ".part"

// Sync archives the sealed segments of node, whose agent serves them at
// base (http(s)://host:port), that Dir lacks.
func (f *Fetcher) Sync(ctx context.Context, node, base string) (res Result, err error) {
	if !naming.ValidNode(node) {
		return res, fmt.Errorf("archive: node name %q is not a DNS subdomain", node)
	}
	if f.TLS != nil && !strings.HasPrefix(base, "https://") {
		return res, fmt.Errorf("archive: %s's agent is at %s: TLS is required", node, redact(base))
	}
	dir := filepath.Join(f.Dir, node)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return res, fmt.Errorf("archive: %w", err)
	}
	var list segments.List
	if err := f.getJSON(ctx, base+segments.ListPath, &list); err != nil {
		return res, fmt.Errorf("archive: listing %s's segments: %w", node, err)
	}
	have, err := Archived(dir)
	if err != nil {
		return res, err
	}
	// What the archive still lacks of this listing when the sync ends is
	// what goes with the node if it leaves the cluster before the next.
	defer func() {
		if perr := savePending(dir, list, time.Now()); perr != nil && err == nil {
			err = perr
		}
	}()
	if len(have) > 0 && len(list.Segments) > 0 {
		newest, oldest := have[len(have)-1], list.Segments[0].Seq
		if oldest > newest+1 {
			res.Missed = int(oldest - newest - 1)
		}
	}
	for _, sg := range list.Segments {
		if _, ok := slices.BinarySearch(have, sg.Seq); ok {
			continue
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		err := f.fetch(ctx, dir, base, sg)
		var bad corruptError
		switch {
		case errors.As(err, &bad):
			res.Corrupt++
		case err != nil:
			return res, fmt.Errorf("archive: %s segment %d: %w", node, sg.Seq, err)
		default:
			res.Fetched++
			res.Bytes += sg.DataBytes + sg.IndexBytes
		}
	}
	return res, nil
}

// corruptError is a segment that failed verification.
type corruptError struct{ err error }

func (e corruptError) Error() string { return e.err.Error() }

// fetch downloads one segment's two files, verifies them and moves them
// into place (the index last: a data file without its index is not yet
// archived).
func (f *Fetcher) fetch(ctx context.Context, dir, base string, sg store.SegmentInfo) error {
	var files [2][]byte
	for i, ext := range []string{"log", "idx"} {
		size := sg.DataBytes
		if ext == "idx" {
			size = sg.IndexBytes
		}
		b, err := f.download(ctx, base, filepath.Join(dir, store.SegmentFileName(sg.Seq, ext)+partSuffix), store.SegmentFileName(sg.Seq, ext), size)
		if err != nil {
			return err
		}
		files[i] = b
	}
	if _, err := store.Verify(sg.Seq, files[0], files[1]); err != nil {
		for _, ext := range []string{"log", "idx"} {
			_ = os.Remove(filepath.Join(dir, store.SegmentFileName(sg.Seq, ext)+partSuffix))
		}
		return corruptError{err}
	}
	for _, ext := range []string{"log", "idx"} {
		name := filepath.Join(dir, store.SegmentFileName(sg.Seq, ext))
		if err := os.Rename(name+partSuffix, name); err != nil {
			return err
		}
	}
	return durable.SyncDir(dir)
}

// download fetches name into part, resuming from what part holds, and
// returns the whole file.
func (f *Fetcher) download(ctx context.Context, base, part, name string, size int64) ([]byte, error) {
	if size < 0 || size > maxFile {
		return nil, corruptError{fmt.Errorf("%s: size %d out of bounds", name, size)}
	}
	w, err := os.OpenFile(part, os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	have, err := w.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	if have > size { // not this file's: start again
		if err := w.Truncate(0); err != nil {
			return nil, err
		}
		if have, err = w.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
	}
	if have < size {
		if err := f.get(ctx, base+segments.ListPath+"/"+name, have, size, w); err != nil {
			return nil, err
		}
	}
	if err := w.Sync(); err != nil {
		return nil, err
	}
	b := make([]byte, size)
	if _, err := w.ReadAt(b, 0); err != nil && !(errors.Is(err, io.EOF) && size == 0) {
		return nil, err
	}
	return b, nil
}

// maxFile bounds a segment file (the store's segments are at most 64 MiB and
// a frame).
const maxFile = 1 << 30

// get appends bytes [from, size) of u to w.
func (f *Fetcher) get(ctx context.Context, u string, from, size int64, w io.Writer) error {
	req, err := f.request(ctx, u)
	if err != nil {
		return err
	}
	if from > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(from, 10)+"-")
	}
	resp, err := f.client().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case from > 0 && resp.StatusCode == http.StatusPartialContent:
		if !strings.HasPrefix(resp.Header.Get("Content-Range"), "bytes "+strconv.FormatInt(from, 10)+"-") {
			return fmt.Errorf("GET %s: Content-Range %q does not resume at %d", u, resp.Header.Get("Content-Range"), from)
		}
	case from == 0 && resp.StatusCode == http.StatusOK:
	default:
		return fmt.Errorf("GET %s: %s", redact(u), resp.Status)
	}
	n, err := io.Copy(w, io.LimitReader(resp.Body, size-from))
	if err != nil {
		return fmt.Errorf("GET %s: after %d bytes: %w", redact(u), from+n, err)
	}
	if from+n != size {
		return fmt.Errorf("GET %s: %d of %d bytes", redact(u), from+n, size)
	}
	return nil
}

func (f *Fetcher) getJSON(ctx context.Context, u string, v any) error {
	req, err := f.request(ctx, u)
	if err != nil {
		return err
	}
	resp, err := f.client().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", redact(u), resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v)
}

func (f *Fetcher) request(ctx context.Context, u string) (*http.Request, error) {
	token, err := f.Tokens.Token(ctx)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return req, nil
}

func (f *Fetcher) client() *http.Client {
	if f.Client != nil {
		return f.Client
	}
	c := &http.Client{Timeout: 5 * time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if f.TLS != nil {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.transportFor != f.TLS { // a new configuration (renewed CAs): new connections
			if f.transport != nil {
				f.transport.CloseIdleConnections()
			}
			f.transport = http.DefaultTransport.(*http.Transport).Clone()
			// A copy: the transport adds its protocols (h2) to it.
			f.transport.TLSClientConfig, f.transportFor = f.TLS.Clone(), f.TLS
		}
		c.Transport = f.transport
	}
	return c
}

// redact drops anything but the scheme, host and path of u from errors.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(invalid URL)"
	}
	return p.Scheme + "://" + p.Host + p.Path
}

// Archived lists the segments archived in a node's directory (both files
// present), in order.
func Archived(dir string) ([]uint64, error) { return store.SegmentsIn(dir) }

// Package fanout is the manager's cluster-wide flow lookup: a
// lookup.Store that asks the JSON API of every node agent
// (internal/flow/lookup on each node) concurrently, and merges their answers.
//
// A node that fails, times out or answers nonsense does not fail the query:
// the answer carries what the other nodes said and says which node failed
// and why (Store implements lookup.PartialStore, so the page and the API
// show it). Agents' answers are not trusted: their size is bounded, and every
// row is checked (addresses, times, names, and that it matches the query).
package fanout

import (
	"cmp"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/planetkube/planetkube/internal/flow"
	"github.com/planetkube/planetkube/internal/flow/lookup"
	"github.com/planetkube/planetkube/internal/naming"
)

// Target is a node agent to ask.
type Target struct {
	// Node is the node's name; it is set on the records the agent returns.
	Node string
	// URL is the agent's base URL, such as http://10.0.0.5:9470; the query
	// goes to URL/api/v1/flows.
	URL string
	// Archive marks the install's archive (planetkube archiver), which
	// answers for many nodes: its records keep the node they name, and are
	// the archive's (flow.SourceArchive).
	Archive bool
}

// Targets lists the agents to ask; it is called once per query.
type Targets func(ctx context.Context) ([]Target, error)

// StaticTargets always returns ts.
func StaticTargets(ts ...Target) Targets {
	return func(context.Context) ([]Target, error) { return slices.Clone(ts), nil }
}

// Defaults of Options.
const (
	DefaultMaxInFlight = 32
	DefaultTimeout     = 5 * time.Second
	DefaultMaxBody     = 8 << 20
)

// Options tune the Store; zero values take the defaults.
type Options struct {
	// MaxInFlight bounds the requests to agents in flight at once, per
	// query (default 32).
	MaxInFlight int
	// Timeout bounds each agent's answer, from the request to the end of
	// its body (default 5s).
	Timeout time.Duration
	// MaxBody bounds the size of an agent's answer (default 8 MiB); a larger
	// one is that node's error.
	MaxBody int64
	// Client makes the requests (default: one that ignores proxy settings
	// and does not follow redirects).
	Client *http.Client
	// Archive, if set, is the base URL of the install's archive, asked with
	// the nodes: its answer covers times the nodes no longer hold, and its
	// records that a node still holds are left out.
	Archive string
}

// Store asks every target; it implements lookup.Store and
// lookup.PartialStore.
type Store struct {
	targets Targets
	opt     Options
}

var (
	_ lookup.Store        = (*Store)(nil)
	_ lookup.PartialStore = (*Store)(nil)
)

// New returns a Store over the agents that targets lists.
func New(targets Targets, o Options) *Store {
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil
		tr.MaxResponseHeaderBytes = 64 << 10
		tr.MaxIdleConnsPerHost = 2
		o.Client = &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &Store{targets: targets, opt: o}
}

// ErrNoAnswer is the error of a query that targets were asked and none of
// them answered.
var ErrNoAnswer = errors.New("fanout: no node answered")

// Query returns the merged records of the nodes that answered; its error is
// for a query that no node answered (ErrNoAnswer), or that could not be
// asked at all. Use QueryPartial to learn which nodes failed.
func (s *Store) Query(ctx context.Context, q flow.Query) ([]flow.Record, error) {
	res, err := s.QueryPartial(ctx, q)
	return res.Records, err
}

// QueryPartial asks every target for q's flows and merges their records,
// ordered by start then node, at most q.Limit of them. The nodes that did not
// answer are in Errors, in the targets' order. The error is ErrNoAnswer when
// there were targets and none answered (Errors says why), or an error for a
// query that could not be sent (invalid, or the targets unknown). No target
// means no records and no error.
func (s *Store) QueryPartial(ctx context.Context, q flow.Query) (lookup.Partial, error) {
	if !q.Dst.IsValid() && q.Slice == "" {
		return lookup.Partial{}, errors.New("fanout: query: need a destination IP or a slice")
	}
	if q.Slice != "" && !lookup.ValidSliceName(q.Slice) {
		return lookup.Partial{}, errors.New("fanout: query: invalid slice name")
	}
	if !q.To.After(q.From) || q.Limit < 1 {
		return lookup.Partial{}, errors.New("fanout: query: need a window and a positive limit")
	}
	targets, err := s.targets(ctx)
	if err != nil {
		return lookup.Partial{}, fmt.Errorf("fanout: listing the nodes: %w", err)
	}
	answers := make([]answer, len(targets))
	sem := make(chan struct{}, s.opt.MaxInFlight)
	var wg sync.WaitGroup
	for i, t := range targets {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			answers[i].err = errCanceled
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			answers[i] = s.ask(ctx, t, q)
		}()
	}
	var arch *answer
	if s.opt.Archive != "" {
		arch = new(answer)
		wg.Add(1)
		go func() {
			defer wg.Done()
			*arch = s.ask(ctx, Target{Node: "archive", URL: s.opt.Archive, Archive: true}, q)
		}()
	}
	wg.Wait()
	return merge(targets, answers, arch, q.Limit)
}

// answer is one node's answer.
type answer struct {
	recs      []flow.Record
	truncated bool
	// holdings say how far back the node's records go, if it said (the
	// archive's, for each node it holds).
	holdings []lookup.Holding
	err      error
}

// nodeErr is a node's failure as told to the user: msg is safe to show.
type nodeErr struct{ msg string }

func (e nodeErr) Error() string { return e.msg }

var errCanceled = nodeErr{"query canceled"}

func merge(targets []Target, answers []answer, arch *answer, limit int) (lookup.Partial, error) {
	res := lookup.Partial{Asked: len(targets), ArchiveAsked: arch != nil}
	var parts []Part
	for i, a := range answers {
		if a.err != nil {
			res.Errors = append(res.Errors, lookup.NodeError{Node: targets[i].Node, Error: a.err.Error()})
			continue
		}
		parts = append(parts, Part{Records: a.recs, Truncated: a.truncated})
		res.Holdings = append(res.Holdings, a.holdings...)
	}
	switch {
	case arch == nil:
	case arch.err != nil:
		res.ArchiveError = arch.err.Error()
	default:
		// A flow both a node and the archive hold is the node's (its
		// snapshot is at least as recent).
		held := map[flowID]bool{}
		for _, p := range parts {
			for _, r := range p.Records {
				held[idOf(r)] = true
			}
		}
		recs := slices.DeleteFunc(arch.recs, func(r flow.Record) bool { return held[idOf(r)] })
		parts = append(parts, Part{Records: recs, Truncated: arch.truncated})
		res.Holdings = append(res.Holdings, arch.holdings...)
	}
	if len(targets) > 0 && len(res.Errors) == len(targets) && (arch == nil || arch.err != nil) {
		return res, ErrNoAnswer
	}
	res.Records, res.Truncated = Merge(parts, limit)
	return res, nil
}

// flowID is a flow of a node: the store's key for its snapshots.
type flowID struct {
	node  string
	start time.Time
	proto uint8
	orig  flow.Tuple
}

func idOf(r flow.Record) flowID { return flowID{r.Node, r.Start, r.Proto, r.Orig} }

// Part is one source's answer to a query: its records, ordered by start
// then node, and whether it bounded them (more may follow the last).
type Part struct {
	Records   []flow.Record
	Truncated bool
}

// Merge merges the sources' answers by start, then node, into at most
// limit records; truncated says that records may be missing after the
// last one. Past the last record of a source that bounded its answer, that
// source's records are missing: the merge is only whole up to there.
// Records that tie keep the order of their parts, then their order in it.
// The parts are merged as they are ordered (a part that is not is sorted
// first, in place), and only the records returned are visited: a few
// thousand, however many the sources sent.
func Merge(parts []Part, limit int) (recs []flow.Record, truncated bool) {
	var cut *flow.Record // the earliest last record of a source that truncated
	total := 0
	for i := range parts {
		p := &parts[i]
		if !slices.IsSortedFunc(p.Records, order) {
			slices.SortStableFunc(p.Records, order)
		}
		total += len(p.Records)
		if p.Truncated {
			truncated = true
			if n := len(p.Records); n > 0 && (cut == nil || order(p.Records[n-1], *cut) < 0) {
				cut = &p.Records[n-1]
			}
		}
	}
	h := &heads{parts: parts, at: make([]int, len(parts))}
	for i, p := range parts {
		if len(p.Records) > 0 {
			h.idx = append(h.idx, i)
		}
	}
	heap.Init(h)
	recs = make([]flow.Record, 0, min(total, limit))
	for h.Len() > 0 {
		r := h.head(h.idx[0])
		if cut != nil && compare(r, cut) > 0 {
			break
		}
		if len(recs) == limit {
			return recs, true
		}
		recs = append(recs, *r)
		if h.at[h.idx[0]]++; h.at[h.idx[0]] < len(parts[h.idx[0]].Records) {
			heap.Fix(h, 0)
		} else {
			heap.Pop(h)
		}
	}
	return recs, truncated
}

// heads is a heap of the parts that have records left, by their next
// record's order, then the part's index.
type heads struct {
	parts []Part
	at    []int // each part's next record
	idx   []int // the parts in the heap
}

func (h *heads) head(i int) *flow.Record { return &h.parts[i].Records[h.at[i]] }
func (h *heads) Len() int                { return len(h.idx) }
func (h *heads) Swap(i, j int)           { h.idx[i], h.idx[j] = h.idx[j], h.idx[i] }
func (h *heads) Push(x any)              { h.idx = append(h.idx, x.(int)) }
func (h *heads) Pop() any {
	x := h.idx[len(h.idx)-1]
	h.idx = h.idx[:len(h.idx)-1]
	return x
}
func (h *heads) Less(i, j int) bool {
	a, b := h.idx[i], h.idx[j]
	return cmp.Or(compare(h.head(a), h.head(b)), cmp.Compare(a, b)) < 0
}

// order sorts records by start, then node.
func order(a, b flow.Record) int { return compare(&a, &b) }

// compare is order without copying the records.
func compare(a, b *flow.Record) int {
	return cmp.Or(a.Start.Compare(b.Start), strings.Compare(a.Node, b.Node))
}

// ask queries one agent.
func (s *Store) ask(ctx context.Context, t Target, q flow.Query) answer {
	log := logf.FromContext(ctx).WithValues("node", t.Node, "url", t.URL)
	a, err := s.get(ctx, t, q)
	if err != nil {
		log.V(1).Info("Node did not answer a flow query", "error", err.Error())
		var ne nodeErr
		if !errors.As(err, &ne) {
			err = classify(ctx, err)
		}
		return answer{err: err}
	}
	return a
}

// classify turns a transport error (whose text names addresses) into what
// the user is told.
func classify(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return errCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return nodeErr{"timed out"}
	case errors.Is(err, syscall.ECONNREFUSED):
		return nodeErr{"connection refused"}
	default:
		return nodeErr{"unreachable"}
	}
}

// get asks one agent and checks its answer.
func (s *Store) get(ctx context.Context, t Target, q flow.Query) (answer, error) {
	u, err := url.Parse(t.URL)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return answer{}, nodeErr{"invalid agent URL"}
	}
	u = u.JoinPath("api", "v1", "flows")
	v := url.Values{}
	if q.Dst.IsValid() {
		v.Set("ip", q.Dst.String())
	}
	if q.Slice != "" {
		v.Set("slice", q.Slice)
	}
	if q.Port != 0 {
		v.Set("port", strconv.Itoa(int(q.Port)))
	}
	v.Set("from", q.From.UTC().Format(time.RFC3339Nano))
	v.Set("to", q.To.UTC().Format(time.RFC3339Nano))
	u.RawQuery = v.Encode()

	ctx, cancel := context.WithTimeout(ctx, s.opt.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return answer{}, nodeErr{"invalid agent URL"}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.opt.Client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.opt.MaxBody+1))
	if err != nil {
		return answer{}, err
	}
	if int64(len(body)) > s.opt.MaxBody {
		return answer{}, nodeErr{fmt.Sprintf("bad response: larger than %d bytes", s.opt.MaxBody)}
	}
	if resp.StatusCode != http.StatusOK {
		msg := fmt.Sprintf("HTTP %d", resp.StatusCode)
		var e lookup.ErrorResponse
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg += ": " + clean(e.Error, 200)
		}
		return answer{}, nodeErr{msg}
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return answer{}, nodeErr{"bad response: not JSON"}
	}
	var r struct {
		Flows     []lookup.Row     `json:"flows"`
		Truncated bool             `json:"truncated"`
		Nodes     []lookup.Holding `json:"nodes"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return answer{}, nodeErr{"bad response: malformed JSON"}
	}
	if r.Flows == nil {
		return answer{}, nodeErr{"bad response: no flows"}
	}
	recs := make([]flow.Record, len(r.Flows))
	for i, row := range r.Flows {
		node := t.Node
		if t.Archive { // the archive names the node of each record
			if node = row.Node; !naming.ValidNode(node) {
				return answer{}, nodeErr{fmt.Sprintf("bad response: flow %d: invalid node", i)}
			}
		}
		if recs[i], err = record(row, node, q); err != nil {
			return answer{}, nodeErr{fmt.Sprintf("bad response: flow %d: %v", i, err)}
		}
		if t.Archive {
			recs[i].Source = flow.SourceArchive
		}
	}
	slices.SortStableFunc(recs, order) // agents sort by start; do not rely on it
	a := answer{recs: recs, truncated: r.Truncated}
	holdings := r.Nodes
	if !t.Archive {
		// An agent tells of itself, under the name we know it by.
		holdings = holdings[:min(len(holdings), 1)]
	}
	for _, h := range holdings {
		if h.RecordsSince != nil && !validTime(*h.RecordsSince) || h.RetentionSeconds < 0 || h.RetentionSeconds > maxRetention {
			return answer{}, nodeErr{"bad response: invalid records_since or retention_seconds"}
		}
		if h.RecordsSince != nil {
			since := h.RecordsSince.UTC()
			h.RecordsSince = &since
		}
		h.Source = ""
		if t.Archive {
			if !naming.ValidNode(h.Node) {
				return answer{}, nodeErr{"bad response: invalid node in nodes"}
			}
			h.Source = flow.SourceArchive
		} else {
			h.Node = t.Node
		}
		a.holdings = append(a.holdings, h)
	}
	return a, nil
}

// Bounds on an agent's strings and retention (100 years).
const (
	maxRetention = 100 * 365 * 24 * 3600

	maxSliver = 253 + 1 + 253
	maxUID    = 64
)

// record checks an agent's row and turns it back into a record of node.
func record(row lookup.Row, node string, q flow.Query) (flow.Record, error) {
	r := flow.Record{
		Start: row.Start.UTC(), Proto: row.Proto,
		OrigBytes: row.OrigBytes, OrigPackets: row.OrigPackets,
		ReplyBytes: row.ReplyBytes, ReplyPackets: row.ReplyPackets,
		Slice: row.Slice, Sliver: row.Sliver, PodUID: row.PodUID, Node: node,
	}
	if !validTime(r.Start) {
		return r, errors.New("invalid start")
	}
	if row.End != nil {
		r.End = row.End.UTC()
		if !validTime(r.End) || r.End.Before(r.Start) {
			return r, errors.New("invalid end")
		}
	}
	var err error
	for _, a := range []struct {
		s string
		p *netip.AddrPort
	}{{row.OrigSrc, &r.Orig.Src}, {row.OrigDst, &r.Orig.Dst}, {row.ReplySrc, &r.Reply.Src}, {row.ReplyDst, &r.Reply.Dst}} {
		if *a.p, err = netip.ParseAddrPort(a.s); err != nil || a.p.Addr().Zone() != "" {
			return r, errors.New("invalid address")
		}
	}
	if r.Slice != "" && !lookup.ValidSliceName(r.Slice) {
		return r, errors.New("invalid slice name")
	}
	if !printable(r.Sliver, maxSliver) || !printable(r.PodUID, maxUID) {
		return r, errors.New("invalid sliver")
	}
	// The agent answers the query asked, or it is wrong.
	if q.Dst.IsValid() && r.Orig.Dst.Addr().Unmap() != q.Dst || q.Port != 0 && r.Orig.Dst.Port() != q.Port {
		return r, errors.New("destination not the one asked")
	}
	if q.Slice != "" && r.Slice != q.Slice {
		return r, errors.New("slice not the one asked")
	}
	if !r.Start.Before(q.To) || !r.End.IsZero() && r.End.Before(q.From) {
		return r, errors.New("outside the window asked")
	}
	return r, nil
}

func validTime(t time.Time) bool {
	y := t.Year()
	return y >= 1970 && y <= 9999
}

// printable says whether s is at most n bytes of printable UTF-8.
func printable(s string, n int) bool {
	if len(s) > n || !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if !unicode.IsPrint(c) {
			return false
		}
	}
	return true
}

// clean makes an agent's message printable and at most n bytes.
func clean(s string, n int) string {
	s = strings.Map(func(c rune) rune {
		if unicode.IsPrint(c) {
			return c
		}
		return -1
	}, strings.ToValidUTF8(s, ""))
	if len(s) > n {
		s = s[:n]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return s
}

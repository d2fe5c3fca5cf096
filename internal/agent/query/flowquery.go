// Package query serves a node's flow lookup over HTTP: a human page
// (GET /) and a JSON API (GET /api/v1/flows) that give the same answers.
// It is read-only, validates every input (400 with a message, the store is
// not asked), bounds results, and rate-limits each client IP.
//
// The same handler serves the cluster-wide lookup on the manager, over a
// store that asks every node (internal/lookup/fanout): such a store implements
// PartialStore, and the nodes that did not answer are listed in the answer
// (the API's "errors", a notice on the page) rather than lost silently.
package query

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
)

// Store is what the handler reads (internal/agent/store implements it).
type Store interface {
	Query(ctx context.Context, q flow.Query) ([]flow.Record, error)
}

// NodeError says that a node did not answer a query, and why.
type NodeError struct {
	Node  string `json:"node"`
	Error string `json:"error"`
}

// Partial is the answer of a PartialStore: the records of the nodes that
// answered, and the nodes that did not.
type Partial struct {
	// Records are ordered by start, at most the query's Limit of them.
	Records []flow.Record
	// Truncated says that records may be missing after the last one, even if
	// there are fewer than the query's Limit (a node bounded its answer).
	Truncated bool
	// Errors lists the nodes that did not answer.
	Errors []NodeError
}

// PartialStore is a Store whose answer may lack some of its sources, such as
// the manager's fan-out to every node. The handler uses QueryPartial rather
// than Query when its store implements it.
type PartialStore interface {
	Store
	// QueryPartial answers q with what the sources that answered gave. Its
	// error is for a query that got no answer at all; it may come with a
	// Partial whose Errors say why each source failed.
	QueryPartial(ctx context.Context, q flow.Query) (Partial, error)
}

// SliceInfo is what the page shows about a slice beside its flows.
type SliceInfo struct {
	FullName, Description, URL string
	Contacts                   []string
}

// Directory resolves a slice's full name to what the page shows about it.
type Directory interface {
	Slice(fullName string) (SliceInfo, bool)
}

// Options tune the handler; zero values take the defaults.
type Options struct {
	// MaxResults bounds the records returned (default 1000).
	MaxResults int
	// MaxWindow bounds the queried time window (default 24h).
	MaxWindow time.Duration
	// RatePerSecond and Burst shape each client IP's token bucket
	// (defaults 5 and 10).
	RatePerSecond float64
	Burst         int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// NodeName, if set, is the node that the records without one were seen
	// by (the node agent sets its own name).
	NodeName string
	// Unlimited lists the client networks that are not rate-limited: the
	// manager's cluster-wide query asks every agent on behalf of all its
	// own (rate-limited) clients.
	Unlimited []netip.Prefix
}

const (
	// DefaultWindow is the window when none is given.
	DefaultWindow = 15 * time.Minute
	maxRawQuery   = 2048
	maxSliceName  = 253
	maxClients    = 10000
	apiPath       = "/api/v1/flows"
	nodeTraffic   = "node traffic (no slice)"
)

// NewHandler returns the lookup handler.
func NewHandler(s Store, d Directory, o Options) http.Handler {
	if o.MaxResults <= 0 {
		o.MaxResults = 1000
	}
	if o.MaxWindow <= 0 {
		o.MaxWindow = 24 * time.Hour
	}
	if o.RatePerSecond <= 0 || math.IsNaN(o.RatePerSecond) {
		o.RatePerSecond = 5
	}
	if o.Burst <= 0 {
		o.Burst = 10
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &handler{store: s, dir: d, opt: o, lim: &limiter{rate: o.RatePerSecond, burst: float64(o.Burst), buckets: map[string]*bucket{}}}
}

type handler struct {
	store Store
	dir   Directory
	opt   Options
	lim   *limiter
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	api := false
	switch r.URL.Path {
	case "/":
	case apiPath:
		api = true
	default:
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		h.fail(w, api, http.StatusMethodNotAllowed, "method not allowed", nil)
		return
	}
	if ip := clientIP(r); !h.unlimited(ip) {
		if wait, ok := h.lim.allow(ip, h.opt.Now()); !ok {
			hd.Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			h.fail(w, api, http.StatusTooManyRequests, "too many requests", nil)
			return
		}
	}
	form, q, err := h.parse(r.URL.RawQuery, api)
	if err != nil {
		h.fail(w, api, http.StatusBadRequest, err.Error(), form)
		return
	}
	if q == nil { // the page with an empty form
		h.page(w, http.StatusOK, pageData{Form: form})
		return
	}
	var res Partial
	if ps, ok := h.store.(PartialStore); ok {
		res, err = ps.QueryPartial(r.Context(), *q)
	} else {
		res.Records, err = h.store.Query(r.Context(), *q)
	}
	if err != nil {
		if len(res.Errors) > 0 { // no node answered: say which failed how
			h.failNodes(w, api, form, res.Errors)
			return
		}
		h.fail(w, api, http.StatusInternalServerError, "internal error", form)
		return
	}
	recs, truncated := res.Records, res.Truncated
	if len(recs) > h.opt.MaxResults {
		recs, truncated = recs[:h.opt.MaxResults], true
	}
	rows := make([]Row, len(recs))
	showNode := false
	for i, rec := range recs {
		if rec.Node == "" {
			rec.Node = h.opt.NodeName
		}
		rows[i] = h.row(rec)
		showNode = showNode || rows[i].Node != ""
	}
	if api {
		writeJSON(w, http.StatusOK, Response{Flows: rows, Truncated: truncated, Errors: res.Errors})
		return
	}
	h.page(w, http.StatusOK, pageData{Form: form, Searched: true, Rows: rows, Truncated: truncated, Max: h.opt.MaxResults,
		ShowNode: showNode, NodeErrors: res.Errors})
}

// formValues is what the page's form shows back.
type formValues struct{ IP, Slice, Time, Window string }

// parse validates the query string. It returns a nil query (and no error)
// for the page without ip or slice, the empty form.
func (h *handler) parse(raw string, api bool) (*formValues, *flow.Query, error) {
	form := &formValues{}
	if len(raw) > maxRawQuery {
		return form, nil, errors.New("query string too long")
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return form, nil, errors.New("malformed query string")
	}
	get := func(k string) (string, error) {
		vs := v[k]
		if len(vs) > 1 {
			return "", errors.New("parameter " + k + " given more than once")
		}
		if len(vs) == 0 {
			return "", nil
		}
		return strings.TrimSpace(vs[0]), nil
	}
	var p [6]string
	for i, k := range []string{"ip", "slice", "time", "window", "from", "to"} {
		if p[i], err = get(k); err != nil {
			return form, nil, err
		}
	}
	ipS, slice, tS, winS, fromS, toS := p[0], p[1], p[2], p[3], p[4], p[5]
	*form = formValues{IP: ipS, Slice: slice, Time: tS, Window: winS}
	if ipS == "" && slice == "" {
		if !api && tS == "" && winS == "" && fromS == "" && toS == "" {
			return form, nil, nil
		}
		return form, nil, errors.New("give an ip or a slice")
	}
	q := &flow.Query{Limit: h.opt.MaxResults + 1}
	if ipS != "" {
		a, err := netip.ParseAddr(ipS)
		if err != nil || a.Zone() != "" {
			return form, nil, errors.New("ip: not an IP address")
		}
		q.Dst = a.Unmap()
	}
	if slice != "" {
		if !validSlice(slice) {
			return form, nil, errors.New("slice: not a slice full name")
		}
		q.Slice = slice
	}
	if fromS != "" || toS != "" {
		if tS != "" || winS != "" {
			return form, nil, errors.New("give either from and to, or time and window")
		}
		if fromS == "" || toS == "" {
			return form, nil, errors.New("give both from and to")
		}
		if q.From, err = parseTime(fromS); err != nil {
			return form, nil, errors.New("from: not an RFC 3339 time")
		}
		if q.To, err = parseTime(toS); err != nil {
			return form, nil, errors.New("to: not an RFC 3339 time")
		}
		if !q.To.After(q.From) {
			return form, nil, errors.New("to must be after from")
		}
		if q.To.Sub(q.From) > h.opt.MaxWindow {
			return form, nil, errors.New("window longer than " + h.opt.MaxWindow.String())
		}
		return form, q, nil
	}
	t := h.opt.Now()
	if tS != "" {
		if t, err = parseTime(tS); err != nil {
			return form, nil, errors.New("time: not an RFC 3339 time")
		}
	}
	win := DefaultWindow
	if winS != "" {
		if win, err = parseWindow(winS); err != nil {
			return form, nil, err
		}
	}
	if win > h.opt.MaxWindow {
		return form, nil, errors.New("window longer than " + h.opt.MaxWindow.String())
	}
	// The window is centred on the time: [t-w/2, t+w/2).
	q.From, q.To = t.Add(-win/2), t.Add(win-win/2)
	if !q.To.After(q.From) { // saturated at the ends of time.Time
		return form, nil, errors.New("time out of range")
	}
	return form, q, nil
}

// parseTime accepts RFC 3339 and, for the page's datetime-local input,
// "2006-01-02T15:04" (UTC).
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t, err = time.ParseInLocation("2006-01-02T15:04", s, time.UTC)
	}
	if err != nil {
		return time.Time{}, err
	}
	if y := t.Year(); y < 1970 || y > 9999 {
		return time.Time{}, errors.New("year out of range")
	}
	return t.UTC(), nil
}

// parseWindow accepts a Go duration ("15m") or a number of minutes ("15").
func parseWindow(s string) (time.Duration, error) {
	var d time.Duration
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n <= 0 || n > math.MaxInt64/int64(time.Minute) {
			return 0, errors.New("window: must be positive and bounded")
		}
		d = time.Duration(n) * time.Minute
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, errors.New("window: not a duration (15m) or minutes (15)")
	}
	if d <= 0 {
		return 0, errors.New("window: must be positive")
	}
	return d, nil
}

// ValidSliceName says whether s may be a slice's full name: at most 253
// letters, digits, dots, dashes and underscores.
func ValidSliceName(s string) bool { return validSlice(s) }

func validSlice(s string) bool {
	if len(s) > maxSliceName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Row is one flow as the API and the page show it.
type Row struct {
	Start        time.Time  `json:"start"`
	End          *time.Time `json:"end,omitempty"`
	Proto        uint8      `json:"proto"`
	OrigSrc      string     `json:"orig_src"`
	OrigDst      string     `json:"orig_dst"`
	ReplySrc     string     `json:"reply_src"`
	ReplyDst     string     `json:"reply_dst"`
	OrigBytes    uint64     `json:"orig_bytes"`
	OrigPackets  uint64     `json:"orig_packets"`
	ReplyBytes   uint64     `json:"reply_bytes"`
	ReplyPackets uint64     `json:"reply_packets"`
	Slice        string     `json:"slice"`
	Sliver       string     `json:"sliver,omitempty"`
	PodUID       string     `json:"pod_uid,omitempty"`
	Description  string     `json:"description,omitempty"`
	URL          string     `json:"url,omitempty"`
	Contacts     []string   `json:"contacts,omitempty"`
	// Node is the node that saw the flow, when known.
	Node string `json:"node,omitempty"`
}

// Response is the API's answer.
type Response struct {
	Flows     []Row `json:"flows"`
	Truncated bool  `json:"truncated"`
	// Errors lists the nodes that did not answer (a PartialStore's answer).
	Errors []NodeError `json:"errors,omitempty"`
}

// ErrorResponse is the API's answer to a query that failed: Error says why,
// and Errors, when no node answered, says why each failed.
type ErrorResponse struct {
	Error  string      `json:"error"`
	Errors []NodeError `json:"errors,omitempty"`
}

func (h *handler) row(r flow.Record) Row {
	row := Row{
		Start: r.Start.UTC(), Proto: r.Proto,
		OrigSrc: r.Orig.Src.String(), OrigDst: r.Orig.Dst.String(),
		ReplySrc: r.Reply.Src.String(), ReplyDst: r.Reply.Dst.String(),
		OrigBytes: r.OrigBytes, OrigPackets: r.OrigPackets,
		ReplyBytes: r.ReplyBytes, ReplyPackets: r.ReplyPackets,
		Slice: r.Slice, Sliver: r.Sliver, PodUID: r.PodUID, Node: r.Node,
	}
	if !r.End.IsZero() {
		e := r.End.UTC()
		row.End = &e
	}
	if r.Slice != "" && h.dir != nil {
		if info, ok := h.dir.Slice(r.Slice); ok {
			row.Description, row.URL, row.Contacts = info.Description, info.URL, info.Contacts
		}
	}
	return row
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (h *handler) fail(w http.ResponseWriter, api bool, code int, msg string, form *formValues) {
	if api {
		writeJSON(w, code, ErrorResponse{Error: msg})
		return
	}
	if form == nil {
		form = &formValues{}
	}
	h.page(w, code, pageData{Form: form, Error: msg})
}

// failNodes answers a query that no node answered: 502, with why each failed.
func (h *handler) failNodes(w http.ResponseWriter, api bool, form *formValues, errs []NodeError) {
	const msg = "no node answered"
	if api {
		writeJSON(w, http.StatusBadGateway, ErrorResponse{Error: msg, Errors: errs})
		return
	}
	h.page(w, http.StatusBadGateway, pageData{Form: form, Error: msg, NodeErrors: errs})
}

type pageData struct {
	Form      *formValues
	Error     string
	Searched  bool
	Rows      []Row
	Truncated bool
	Max       int
	// ShowNode adds the node column (some row has a node).
	ShowNode   bool
	NodeErrors []NodeError
}

const csp = "default-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

func (h *handler) page(w http.ResponseWriter, code int, d pageData) {
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(code)
	_ = pageTmpl.Execute(w, d)
}

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"ts": func(t time.Time) string { return t.Format(time.RFC3339) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Flow lookup</title></head>
<body>
<h1>Flow lookup</h1>
<form method="get" action="/">
<label>IP <input name="ip" value="{{.Form.IP}}"></label>
<label>Slice <input name="slice" value="{{.Form.Slice}}"></label>
<label>Time (RFC 3339, UTC) <input name="time" value="{{.Form.Time}}"></label>
<label>Window (minutes) <input name="window" value="{{.Form.Window}}"></label>
<button type="submit">Look up</button>
</form>
{{if .Error}}<p id="error" role="alert">{{.Error}}</p>{{end}}
{{with .NodeErrors}}<div id="node-errors" role="alert"><p>Some nodes did not answer; their flows are missing:</p>
<ul>{{range .}}<li><span class="node">{{.Node}}</span>: <span class="reason">{{.Error}}</span></li>{{end}}</ul></div>{{end}}
{{if .Searched}}
{{if .Truncated}}<p id="truncated">Only the first {{.Max}} flows are shown; narrow the window.</p>{{end}}
{{if .Rows}}
<table id="flows" border="1">
<thead><tr>{{if .ShowNode}}<th>Node</th>{{end}}<th>Start</th><th>End</th><th>Proto</th><th>Original src → dst</th><th>Reply src → dst</th><th>Bytes (orig/reply)</th><th>Pod</th><th>Slice</th><th>Description</th><th>URL</th><th>Contacts</th></tr></thead>
<tbody>
{{$node := .ShowNode}}{{range .Rows}}<tr>
{{if $node}}<td>{{.Node}}</td>{{end}}<td>{{ts .Start}}</td><td>{{with .End}}{{ts .}}{{else}}open{{end}}</td><td>{{.Proto}}</td>
<td>{{.OrigSrc}} → {{.OrigDst}}</td><td>{{.ReplySrc}} → {{.ReplyDst}}</td>
<td>{{.OrigBytes}} / {{.ReplyBytes}}</td><td>{{.Sliver}}</td>
{{if .Slice}}<td>{{.Slice}}</td><td>{{.Description}}</td><td>{{with .URL}}<a href="{{.}}" rel="noopener noreferrer">{{.}}</a>{{end}}</td><td>{{range $i, $c := .Contacts}}{{if $i}}, {{end}}{{$c}}{{end}}</td>
{{else}}<td colspan="4">node traffic (no slice)</td>{{end}}
</tr>
{{end}}</tbody></table>
{{else}}<p id="none">No flows.</p>{{end}}
{{end}}
</body></html>
`))

// unlimited says whether a client IP is exempt from the rate limit.
func (h *handler) unlimited(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	for _, p := range h.opt.Unlimited {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP is the peer's address; forwarding headers are not trusted.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().WithZone("").String()
	}
	return host
}

// limiter is a token bucket per client IP.
type limiter struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// allow takes a token for key; when none is left it says how long to wait.
func (l *limiter) allow(key string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxClients {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) / l.rate * float64(time.Second)), false
}

// prune drops the buckets that have refilled (they are as good as new), and
// if that is not enough, all of them: memory stays bounded.
func (l *limiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= maxClients {
		clear(l.buckets)
	}
}

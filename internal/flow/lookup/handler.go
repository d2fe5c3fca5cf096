package lookup

import (
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

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
	// TrustedProxies lists the proxies (an Ingress controller's pods)
	// whose X-Forwarded-For names the client to rate-limit; anyone else's
	// is ignored.
	TrustedProxies []netip.Prefix
	// Operator is who runs the testbed, told at the top of the page.
	Operator Operator
	// Retention is how long this node keeps records, and Oldest, if set,
	// returns the start of the oldest record it holds (zero: none): the
	// answer says how far back it can see. Unset for a PartialStore, whose
	// nodes say it themselves.
	Retention time.Duration
	Oldest    func() time.Time
}

const (
	apiPath     = "/api/v1/flows"
	openAPIPath = "/api/v1/openapi.json"
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
	case openAPIPath:
		serveOpenAPI(w, r)
		return
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
	if ip := h.clientIP(r); !h.unlimited(ip) {
		if wait, ok := h.lim.allow(clientKey(ip), h.opt.Now()); !ok {
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
	var cov *coverage
	if ps, ok := h.store.(PartialStore); ok {
		res, err = ps.QueryPartial(r.Context(), *q)
		cov = &coverage{Asked: res.Asked, Answered: res.Asked - len(res.Errors), Archive: res.ArchiveAsked && res.ArchiveError == ""}
	} else {
		res.Records, err = h.store.Query(r.Context(), *q)
		res.Holdings = h.holding()
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
		resp := Response{Flows: rows, Truncated: truncated, Errors: res.Errors, Nodes: res.Holdings, ArchiveError: res.ArchiveError}
		if cov != nil {
			resp.NodesAsked, resp.NodesAnswered = &cov.Asked, &cov.Answered
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	h.page(w, http.StatusOK, pageData{Form: form, Searched: true, Truncated: truncated, Max: h.opt.MaxResults,
		ShowNode: showNode, NodeErrors: res.Errors, Coverage: cov, ArchiveError: res.ArchiveError,
		Answer: h.answer(form, q, rows, res.Holdings, cov)})
}

// holding is this node's Holding, when the handler knows it.
func (h *handler) holding() []Holding {
	if h.opt.Oldest == nil && h.opt.Retention <= 0 {
		return nil
	}
	hd := Holding{Node: h.opt.NodeName, RetentionSeconds: int64(h.opt.Retention / time.Second)}
	if h.opt.Oldest != nil {
		if t := h.opt.Oldest(); !t.IsZero() {
			t = t.UTC()
			hd.RecordsSince = &t
		}
	}
	return []Holding{hd}
}

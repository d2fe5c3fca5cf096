package query

import (
	"encoding/json"
	"html/template"
	"net/http"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
)

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
	// NodesAsked and NodesAnswered say how much of the install the answer
	// covers (a PartialStore's answer; absent from one node's own).
	NodesAsked    *int `json:"nodes_asked,omitempty"`
	NodesAnswered *int `json:"nodes_answered,omitempty"`
}

// coverage is how many nodes an answer covers, for a PartialStore's.
type coverage struct{ Asked, Answered int }

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
	// Coverage is set for a PartialStore's answer.
	Coverage *coverage
	// Operator runs the testbed; Node is this node (empty for the
	// install's cluster-wide page).
	Operator Operator
	Node     string
}

const csp = "default-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

func (h *handler) page(w http.ResponseWriter, code int, d pageData) {
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(code)
	d.Operator, d.Node = h.opt.Operator, h.opt.NodeName
	_ = pageTmpl.Execute(w, d)
}

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"ts": func(t time.Time) string { return t.Format(time.RFC3339) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Flow lookup</title></head>
<body>
<h1>Flow lookup</h1>
<div id="about">
<p>This {{if .Node}}machine, node {{.Node}},{{else}}page covers every node that{{end}} belongs to a testbed{{with .Operator.Name}} run by {{if $.Operator.URL}}<a href="{{$.Operator.URL}}" rel="noopener noreferrer">{{.}}</a>{{else}}{{.}}{{end}}{{else}}{{with .Operator.URL}} (<a href="{{.}}" rel="noopener noreferrer">{{.}}</a>){{end}}{{end}}.
Researchers run experiments on it in slices, and its traffic comes from them. This page finds the slice that sent traffic to an address, with the people responsible for it.</p>
{{with .Operator.ContactLink}}<p id="abuse">To report unwanted traffic: <a href="{{.}}">{{$.Operator.AbuseContact}}</a>.</p>{{else}}{{if not .Operator.Name}}<p id="abuse">The operator of this testbed did not give a name or a contact; the slices' contacts are listed with their flows.</p>{{end}}{{end}}
</div>
<form method="get" action="/">
<label>IP <input name="ip" value="{{.Form.IP}}"></label>
<label>Slice <input name="slice" value="{{.Form.Slice}}"></label>
<label>Time (empty: now) <input name="time" type="datetime-local" step="1" value="{{.Form.Time}}"></label>
<label>Time zone (empty: UTC) <input name="zone" value="{{.Form.Zone}}" placeholder="UTC, Europe/Paris or +01:00"></label>
<label>Window (minutes) <input name="window" value="{{.Form.Window}}"></label>
<button type="submit">Look up</button>
</form>
{{if .Error}}<p id="error" role="alert">{{.Error}}</p>{{end}}
{{with .NodeErrors}}<div id="node-errors" role="alert"><p>Some nodes did not answer; their flows are missing:</p>
<ul>{{range .}}<li><span class="node">{{.Node}}</span>: <span class="reason">{{.Error}}</span></li>{{end}}</ul></div>{{end}}
{{if .Searched}}
{{with .Coverage}}{{if .Asked}}<p id="coverage">{{.Answered}} of {{.Asked}} nodes answered.</p>{{else}}<p id="coverage" role="alert">No node agents were found: no node was asked, so this answer says nothing about the traffic.</p>{{end}}{{end}}
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
{{else}}{{if or (not .Coverage) .Coverage.Asked}}<p id="none">No flows.</p>{{end}}{{end}}
{{end}}
</body></html>
`))

package lookup

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
)

// answerView is the page's answer to a search: in words first (one group
// per slice that sent flows), then the flows, then how much it covers.
type answerView struct {
	// Window is the time window in words, in the zone asked.
	Window string
	// Zone names the zone the times are shown in.
	Zone string
	// Target is what was asked, in words: "to 192.0.2.7 port 443", or
	// "of slice plc.x.y".
	Target string
	// IP is the address asked, if any.
	IP string
	// Groups are the slices (and the node's own traffic) that sent flows,
	// the most flows first.
	Groups []sliceGroup
	// Flows are the table's rows.
	Flows []flowView
	// Archived is how many of them the archive answered for.
	Archived int
	// Holdings say how far back the records go, one sentence each.
	Holdings []string
}

// sliceGroup is the flows of one slice, or of the node itself when Slice is
// empty.
type sliceGroup struct {
	Slice string
	Count int
	Info  SliceInfo
	// Known is false for a slice the directory does not know (deleted, or
	// of another authority that told nothing).
	Known bool
	// Nodes are the nodes that saw its flows.
	Nodes []string
	// Archived is how many of its flows the archive answered for.
	Archived int
	// ReportHref is a mailto link carrying the slice and the flows' times
	// ("" when there is no address to write to); ReportTo says to whom.
	ReportHref, ReportTo string
}

// flowView is one row of the flows table.
type flowView struct {
	// Archived says that the archive answered for this flow.
	Archived             bool
	Node, Slice, Sliver  string
	Start, End           string // in the zone asked; End "" for an open flow
	StartISO, EndISO     string // RFC 3339, for <time datetime>
	Proto                string
	Src, SeenAs, Dst     string // SeenAs: the source after NAT, if it differs
	Sent, Received       string // human-readable
	SentBytes, RecvBytes uint64
}

// maxReportFlows bounds the flows listed in a report's body, so that the
// mailto link stays short enough for mail clients.
const maxReportFlows = 20

const dayLayout, clockLayout = "2006-01-02", "15:04:05"

// answer builds the page's answer from the rows returned for q.
func (h *handler) answer(form *formValues, q *flow.Query, rows []Row, holdings []Holding, cov *coverage) *answerView {
	loc := form.loc
	a := &answerView{Window: windowWords(q.From, q.To, loc), Zone: loc.String(), IP: form.IP}
	switch {
	case q.Dst.IsValid() && q.Port != 0:
		a.Target = fmt.Sprintf("to %s port %d", q.Dst, q.Port)
	case q.Dst.IsValid():
		a.Target = "to " + q.Dst.String()
	}
	if q.Slice != "" {
		if a.Target != "" {
			a.Target += " "
		}
		a.Target += "of slice " + q.Slice
	}
	byName := map[string]int{}
	for _, r := range rows {
		i, ok := byName[r.Slice]
		if !ok {
			i = len(a.Groups)
			byName[r.Slice] = i
			g := sliceGroup{Slice: r.Slice}
			if r.Slice != "" && h.dir != nil {
				g.Info, g.Known = h.dir.Slice(r.Slice)
			}
			a.Groups = append(a.Groups, g)
		}
		a.Groups[i].Count++
		if r.Source == flow.SourceArchive {
			a.Groups[i].Archived++
		}
		if r.Node != "" && !slices.Contains(a.Groups[i].Nodes, r.Node) {
			a.Groups[i].Nodes = append(a.Groups[i].Nodes, r.Node)
		}
		a.Flows = append(a.Flows, flowRow(r, loc))
		if r.Source == flow.SourceArchive {
			a.Archived++
		}
	}
	for i := range a.Groups {
		g := &a.Groups[i]
		g.ReportHref, g.ReportTo = h.report(a, g)
	}
	// The slices with the most flows first; the node's own traffic last.
	slices.SortStableFunc(a.Groups, func(x, y sliceGroup) int {
		if (x.Slice == "") != (y.Slice == "") {
			if x.Slice == "" {
				return 1
			}
			return -1
		}
		return y.Count - x.Count
	})
	a.Holdings = holdingWords(holdings, q.From, loc, cov == nil)
	return a
}

func flowRow(r Row, loc *time.Location) flowView {
	v := flowView{
		Node: r.Node, Slice: r.Slice, Sliver: r.Sliver, Archived: r.Source == flow.SourceArchive,
		Start: inZone(r.Start, loc), StartISO: r.Start.UTC().Format(time.RFC3339),
		Proto:     protoName(r.Proto),
		Src:       endpoint(r.OrigSrc, r.Proto),
		Dst:       endpoint(r.OrigDst, r.Proto),
		Sent:      humanBytes(r.OrigBytes),
		Received:  humanBytes(r.ReplyBytes),
		SentBytes: r.OrigBytes, RecvBytes: r.ReplyBytes,
	}
	if r.End != nil {
		v.End, v.EndISO = inZone(*r.End, loc), r.End.UTC().Format(time.RFC3339)
	}
	// The reply's destination is the source as the other end saw it: the
	// node's address, when the sliver's was translated.
	if r.ReplyDst != r.OrigSrc {
		v.SeenAs = endpoint(r.ReplyDst, r.Proto)
	}
	return v
}

// report is the mailto link of a group: to the operator's abuse address,
// copying the slice's contacts that are e-mail addresses (or to those alone
// when the operator gave none), with the slice and the flows in the subject
// and body.
func (h *handler) report(a *answerView, g *sliceGroup) (href, to string) {
	var cc []string
	for _, c := range g.Info.Contacts {
		if m := mailAddress(c); m != "" {
			cc = append(cc, m)
		}
	}
	abuse := h.opt.Operator.mail()
	switch {
	case abuse != "":
		to = abuse
	case len(cc) > 0:
		to, cc = cc[0], cc[1:]
	default:
		return "", ""
	}
	who := "slice " + g.Slice
	if g.Slice == "" {
		who = "a testbed node itself (no slice)"
	}
	subject := "Unwanted traffic from " + who
	if a.IP != "" {
		subject = "Unwanted traffic to " + a.IP + " from " + who
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s, these flows %s came from %s", capFirst(a.Window), a.Target, who)
	if len(g.Nodes) > 0 {
		fmt.Fprintf(&b, ", seen by node %s", strings.Join(g.Nodes, ", "))
	}
	b.WriteString(":\n\n")
	n := 0
	for _, f := range a.Flows {
		if f.Slice != g.Slice {
			continue
		}
		if n++; n > maxReportFlows {
			continue
		}
		fmt.Fprintf(&b, "- %s %s %s %s -> %s, %s sent, %s received\n", f.Start, a.Zone, f.Proto, f.Src, f.Dst, f.Sent, f.Received)
	}
	if n > maxReportFlows {
		fmt.Fprintf(&b, "- and %d more\n", n-maxReportFlows)
	}
	q := "subject=" + mailEscape(subject) + "&body=" + mailEscape(b.String())
	if len(cc) > 0 {
		q = "cc=" + mailEscape(strings.Join(cc, ",")) + "&" + q
	}
	return "mailto:" + mailEscape(to) + "?" + q, to
}

// mailEscape escapes for a mailto URL (RFC 6068): spaces as %20, not +.
func mailEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// holdingWords says how far back the records of the nodes that answered go:
// one sentence for one node's own page (self), else a sentence on the
// retention and one naming the nodes whose records begin after from.
func holdingWords(hs []Holding, from time.Time, loc *time.Location, self bool) []string {
	if len(hs) == 0 {
		return nil
	}
	var out []string
	if self {
		h := hs[0]
		s := "This node "
		if h.RetentionSeconds > 0 {
			s += "keeps flow records for " + durationWords(time.Duration(h.RetentionSeconds)*time.Second) + " and "
		}
		switch {
		case h.RecordsSince == nil:
			s += "holds none yet, so it cannot tell about any traffic."
		case h.RecordsSince.After(from):
			s += "holds them only from " + inZone(*h.RecordsSince, loc) + " " + loc.String() + ", after the start of this window: it cannot tell about traffic before then."
		default:
			s += "holds them from " + inZone(*h.RecordsSince, loc) + " " + loc.String() + " on, so they cover the whole window."
		}
		return append(out, s)
	}
	// How far back each node's records go, on the node or in the archive.
	var rets, archRets []time.Duration
	var nodes []string
	since := map[string]*time.Time{}
	var archived int
	var archSince *time.Time
	for _, h := range hs {
		if _, ok := since[h.Node]; !ok {
			nodes = append(nodes, h.Node)
			since[h.Node] = nil
		}
		if s := since[h.Node]; h.RecordsSince != nil && (s == nil || h.RecordsSince.Before(*s)) {
			since[h.Node] = h.RecordsSince
		}
		d := time.Duration(h.RetentionSeconds) * time.Second
		if h.Source == flow.SourceArchive {
			archived++
			if d > 0 {
				archRets = append(archRets, d)
			}
			if h.RecordsSince != nil && (archSince == nil || h.RecordsSince.Before(*archSince)) {
				archSince = h.RecordsSince
			}
		} else if d > 0 {
			rets = append(rets, d)
		}
	}
	if len(rets) > 0 {
		out = append(out, "The nodes that answered keep flow records for "+spanWords(rets)+".")
	}
	if archived > 0 {
		s := fmt.Sprintf("The install's archive holds the records of %d node(s)", archived)
		if len(archRets) > 0 {
			s += ", kept for " + spanWords(archRets)
		}
		if archSince != nil {
			s += ", back to " + inZone(*archSince, loc) + " " + loc.String()
		}
		out = append(out, s+".")
	}
	var late []string
	for _, n := range nodes {
		if s := since[n]; s == nil {
			late = append(late, n+" (no records yet)")
		} else if s.After(from) {
			late = append(late, n+" (from "+inZone(*s, loc)+")")
		}
	}
	if len(late) == 0 {
		return append(out, "Every node that answered holds records for the whole window.")
	}
	const most = 10
	n, more := len(late), ""
	if len(late) > most {
		more = fmt.Sprintf(" and %d more", len(late)-most)
		late = late[:most]
	}
	return append(out, fmt.Sprintf("%d node(s) hold no records for the start of this window, so their earlier traffic is not known: %s%s.",
		n, strings.Join(late, ", "), more))
}

// spanWords is a range of retentions in words: "7 days", "1 day to 7 days".
func spanWords(ds []time.Duration) string {
	lo, hi := slices.Min(ds), slices.Max(ds)
	if lo == hi {
		return durationWords(lo)
	}
	return durationWords(lo) + " to " + durationWords(hi)
}

// windowWords is [from, to) in words, in loc: the date once when both ends
// are on the same day.
func windowWords(from, to time.Time, loc *time.Location) string {
	f, t := from.In(loc), to.In(loc)
	end := t.Format(dayLayout + " " + clockLayout)
	if f.Format(dayLayout) == t.Format(dayLayout) {
		end = t.Format(clockLayout)
	}
	return "between " + f.Format(dayLayout+" "+clockLayout) + " and " + end + " " + loc.String()
}

// inZone is t in loc as a date and a time of day.
func inZone(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return ""
	}
	return t.In(loc).Format(dayLayout + " " + clockLayout)
}

// durationWords says a retention: in days when it is whole days.
func durationWords(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d == day:
		return "1 day"
	case d%day == 0:
		return strconv.FormatInt(int64(d/day), 10) + " days"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + " hours"
	}
	return d.String()
}

// humanBytes is a byte count in SI units with three significant digits.
func humanBytes(n uint64) string {
	if n < 1000 {
		return strconv.FormatUint(n, 10) + " B"
	}
	v := float64(n)
	for _, u := range []string{"kB", "MB", "GB", "TB", "PB"} {
		v /= 1000
		if v < 999.5 || u == "PB" {
			switch {
			case v < 9.995:
				return strconv.FormatFloat(v, 'f', 2, 64) + " " + u
			case v < 99.95:
				return strconv.FormatFloat(v, 'f', 1, 64) + " " + u
			}
			return strconv.FormatFloat(v, 'f', 0, 64) + " " + u
		}
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " EB"
}

// protoName names the IP protocols the page is likely to show.
func protoName(p uint8) string {
	switch p {
	case 1:
		return "ICMP"
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 47:
		return "GRE"
	case 50:
		return "ESP"
	case 58:
		return "ICMPv6"
	case 132:
		return "SCTP"
	case 136:
		return "UDP-Lite"
	}
	return "protocol " + strconv.Itoa(int(p))
}

// hasPorts says whether the protocol's flows are told apart by ports.
func hasPorts(p uint8) bool { return p == 6 || p == 17 || p == 132 || p == 136 }

// endpoint shows an address and port, or the address alone for a protocol
// without ports.
func endpoint(addrPort string, proto uint8) string {
	if hasPorts(proto) {
		return addrPort
	}
	if i := strings.LastIndexByte(addrPort, ':'); i > 0 {
		return strings.Trim(addrPort[:i], "[]")
	}
	return addrPort
}

// capFirst starts s with a capital letter (s starts with an ASCII letter).
func capFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

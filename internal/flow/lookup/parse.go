package lookup

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
)

// DefaultWindow is the window when none is given.
const DefaultWindow = 15 * time.Minute

const (
	maxRawQuery  = 2048
	maxSliceName = 253
)

// formValues is what the page's form shows back, and the zone its answer's
// times are shown in (UTC until the zone is parsed).
type formValues struct {
	IP, Port, Slice, Time, Zone, Window string
	loc                                 *time.Location
}

// parse validates the query string. It returns a nil query (and no error)
// for the page without ip or slice, the empty form.
func (h *handler) parse(raw string, api bool) (*formValues, *flow.Query, error) {
	form := &formValues{loc: time.UTC}
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
	var p [8]string
	for i, k := range []string{"ip", "slice", "time", "window", "from", "to", "zone", "port"} {
		if p[i], err = get(k); err != nil {
			return form, nil, err
		}
	}
	ipS, slice, tS, winS, fromS, toS, zoneS, portS := p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
	*form = formValues{IP: ipS, Port: portS, Slice: slice, Time: tS, Zone: zoneS, Window: winS, loc: time.UTC}
	if ipS == "" && slice == "" {
		if !api && tS == "" && winS == "" && fromS == "" && toS == "" && zoneS == "" && portS == "" {
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
	if portS != "" {
		n, err := strconv.ParseUint(portS, 10, 16)
		if err != nil || n == 0 {
			return form, nil, errors.New("port: expected a number from 1 to 65535")
		}
		if ipS == "" {
			return form, nil, errors.New("port: give the address (ip) the port is on")
		}
		q.Port = uint16(n)
	}
	loc, err := parseZone(zoneS)
	if err != nil {
		return form, nil, fmt.Errorf("zone: %w", err)
	}
	form.loc = loc
	now := h.opt.Now()
	if fromS != "" || toS != "" {
		if tS != "" || winS != "" {
			return form, nil, errors.New("give either from and to, or time and window")
		}
		if fromS == "" || toS == "" {
			return form, nil, errors.New("give both from and to")
		}
		if q.From, err = parseWhen(fromS, zoneS, now); err != nil {
			return form, nil, fmt.Errorf("from: %w", err)
		}
		if q.To, err = parseWhen(toS, zoneS, now); err != nil {
			return form, nil, fmt.Errorf("to: %w", err)
		}
		if !q.To.After(q.From) {
			return form, nil, errors.New("to must be after from")
		}
		if q.To.Sub(q.From) > h.opt.MaxWindow {
			return form, nil, errors.New("window longer than " + h.opt.MaxWindow.String())
		}
		return form, q, nil
	}
	t := now
	if tS != "" {
		if t, err = parseWhen(tS, zoneS, now); err != nil {
			return form, nil, fmt.Errorf("time: %w", err)
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

package lookup

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/planetkube/planetkube/internal/flow"
)

// checkStore fails the test if it is ever asked an invalid query.
type checkStore struct {
	t         *testing.T
	maxWindow time.Duration
	limit     int
}

func (c checkStore) Query(_ context.Context, q flow.Query) ([]flow.Record, error) {
	if !q.Dst.IsValid() && q.Slice == "" {
		c.t.Errorf("query with neither ip nor slice: %+v", q)
	}
	if q.Dst.IsValid() && (q.Dst.Zone() != "" || q.Dst.Is4In6()) {
		c.t.Errorf("unnormalised ip: %+v", q)
	}
	if !validSlice(q.Slice) {
		c.t.Errorf("bad slice: %+v", q)
	}
	if !q.To.After(q.From) || q.To.Sub(q.From) > c.maxWindow {
		c.t.Errorf("bad window: %+v", q)
	}
	if q.Limit != c.limit {
		c.t.Errorf("limit %d, want %d", q.Limit, c.limit)
	}
	return []flow.Record{{Slice: q.Slice}}, nil
}

func FuzzQueryParams(f *testing.F) {
	for _, s := range []string{
		"", "ip=1.2.3.4", "ip=::1&time=2025-03-01T12:00:00Z&window=15m", "ip=1.2.3.4&window=15",
		"slice=plc.princeton.codeen&from=2025-03-01T10:00:00Z&to=2025-03-01T11:00:00Z",
		"ip=fe80::1%25eth0", "ip=::ffff:1.2.3.4", "ip=1.2.3.4&window=-1ns", "ip=1.2.3.4&window=1ns",
		"ip=1.2.3.4&time=9999-12-31T23:59:59Z&window=24h", "ip=1.2.3.4&time=1970-01-01T00:00:00Z&window=1440",
		"slice=%3Cscript%3E", "ip=%zz", "ip=1.2.3.4&ip=1.2.3.4", "ip=1.2.3.4&time=2025-03-01T12:00",
	} {
		f.Add(s)
	}
	const maxWindow = 24 * time.Hour
	f.Fuzz(func(t *testing.T, raw string) {
		h := NewHandler(checkStore{t: t, maxWindow: maxWindow, limit: 101}, dir, Options{
			MaxResults: 100, MaxWindow: maxWindow, RatePerSecond: 1e9, Burst: 1 << 30,
			Now: func() time.Time { return now },
		})
		for _, p := range []string{"/api/v1/flows", "/"} {
			r := httptest.NewRequest("GET", "/", nil)
			r.URL.Path, r.URL.RawQuery = p, raw
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if c := w.Code; c != 200 && c != 400 {
				t.Errorf("%s?%q: code %d", p, raw, c)
			}
		}
	})
}

package expiry

import (
	"strings"
	"testing"
	"time"
)

func TestEvaluate(t *testing.T) {
	created := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	at := func(d time.Duration) *time.Time { t := created.Add(d); return &t }
	now10 := created.Add(10 * day)

	tests := []struct {
		name               string
		requested, inForce *time.Time
		now                time.Time
		want               time.Time
		expired            bool
		invalid            []string // substrings of Invalid; nil: accepted
		requeue            time.Duration
	}{{
		name: "no request: 14 days after creation",
		now:  created.Add(time.Hour),
		want: created.Add(14 * day), requeue: 14*day - time.Hour,
	}, {
		name: "no request, expired",
		now:  created.Add(14 * day),
		want: created.Add(14 * day), expired: true,
	}, {
		name:    "no request ignores the expiry in force",
		inForce: at(40 * day), now: now10,
		want: created.Add(14 * day), requeue: 4 * day,
	}, {
		name:      "renewal within 8 weeks",
		requested: at(30 * day), inForce: at(14 * day), now: now10,
		want: created.Add(30 * day), requeue: 20 * day,
	}, {
		name:      "exactly 8 weeks ahead is allowed",
		requested: at(10*day + MaxAhead), now: now10,
		want: now10.Add(MaxAhead), requeue: MaxAhead,
	}, {
		name:      "one second over 8 weeks is refused, expiry in force stays",
		requested: at(10*day + MaxAhead + time.Second), inForce: at(14 * day), now: now10,
		want: created.Add(14 * day), requeue: 4 * day,
		invalid: []string{"expiresAt 2026-05-06T12:00:01Z is more than 8 weeks ahead", "the latest allowed now is 2026-05-06T12:00:00Z."},
	}, {
		name:      "too far ahead without an expiry in force falls back to the default",
		requested: at(365 * day), now: created,
		want: created.Add(14 * day), requeue: 14 * day,
		invalid: []string{"more than 8 weeks ahead"},
	}, {
		name:      "in the past is refused",
		requested: at(5 * day), inForce: at(14 * day), now: now10,
		want: created.Add(14 * day), requeue: 4 * day,
		invalid: []string{"expiresAt 2026-03-06T12:00:00Z is in the past", "after 2026-03-11T12:00:00Z and at most 2026-05-06T12:00:00Z."},
	}, {
		name:      "now itself is refused",
		requested: &now10, inForce: at(14 * day), now: now10,
		want: created.Add(14 * day), requeue: 4 * day,
		invalid: []string{"is in the past"},
	}, {
		name:      "in the past without an expiry in force falls back to the default, expired",
		requested: at(time.Hour), now: created.Add(20 * day),
		want: created.Add(14 * day), expired: true,
		invalid: []string{"is in the past"},
	}, {
		name:      "the expiry in force stands after it has passed",
		requested: at(30 * day), inForce: at(30 * day), now: created.Add(31 * day),
		want: created.Add(30 * day), expired: true,
	}, {
		name:      "the expiry in force stands though now more than 8 weeks ahead (clock skew)",
		requested: at(10*day + MaxAhead), inForce: at(10*day + MaxAhead), now: created.Add(9 * day),
		want: created.Add(10*day + MaxAhead), requeue: day + MaxAhead,
	}, {
		name:      "equal to the second counts as equal",
		requested: at(30*day + 900*time.Millisecond), inForce: at(30 * day), now: now10,
		want: created.Add(30 * day), requeue: 20 * day,
	}, {
		name:      "renewal after expiry brings the slice back",
		requested: at(60 * day), inForce: at(14 * day), now: created.Add(20 * day),
		want: created.Add(60 * day), requeue: 40 * day,
	}, {
		name:      "sub-second now is truncated",
		requested: at(30 * day), now: now10.Add(999 * time.Millisecond),
		want: created.Add(30 * day), requeue: 20 * day,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Evaluate(created, tc.requested, tc.inForce, tc.now)
			if !d.ExpiresAt.Equal(tc.want) {
				t.Errorf("ExpiresAt = %v, want %v", d.ExpiresAt, tc.want)
			}
			if d.Expired != tc.expired {
				t.Errorf("Expired = %v, want %v", d.Expired, tc.expired)
			}
			if d.RequeueAfter != tc.requeue {
				t.Errorf("RequeueAfter = %v, want %v", d.RequeueAfter, tc.requeue)
			}
			if (d.Invalid == "") != (tc.invalid == nil) {
				t.Errorf("Invalid = %q, want refusal: %v", d.Invalid, tc.invalid != nil)
			}
			for _, s := range tc.invalid {
				if !strings.Contains(d.Invalid, s) {
					t.Errorf("Invalid = %q, want it to contain %q", d.Invalid, s)
				}
			}
		})
	}
}

package expiry

import (
	"testing"
	"time"
)

func TestNotice(t *testing.T) {
	exp := time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	tests := []struct {
		name  string
		left  time.Duration // expiresAt - now
		stage Stage
		next  time.Duration
	}{
		{"two weeks left: later, wake at the last week", 14 * day, Later, 7 * day},
		{"7 days and 1 s left: later, 1 s to the last week", 7*day + time.Second, Later, time.Second},
		{"exactly 7 days left: the last week, wake at the last day", 7 * day, LastWeek, 6 * day},
		{"7 days less 1 s left: the last week", 7*day - time.Second, LastWeek, 6*day - time.Second},
		{"24 h and 1 s left: the last week, 1 s to the last day", day + time.Second, LastWeek, time.Second},
		{"exactly 24 h left: the last day, wake at the expiry", day, LastDay, day},
		{"24 h less 1 s left: the last day", day - time.Second, LastDay, day - time.Second},
		{"1 s left: the last day", time.Second, LastDay, time.Second},
		{"exactly at the expiry: expired, no wake", 0, Expired, 0},
		{"past the expiry: expired", -time.Hour, Expired, 0},
		// now is truncated to the second, as Evaluate truncates it.
		{"0.5 s past 7 days left counts as 7 days and 1 s", 7*day + 500*time.Millisecond, Later, time.Second},
		{"0.5 s left counts as 1 s: not expired yet, as Evaluate says", 500 * time.Millisecond, LastDay, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := exp.Add(-tc.left)
			stage, next := Notice(exp, now)
			if stage != tc.stage || next != tc.next {
				t.Errorf("Notice(%s left) = %s, %v; want %s, %v", tc.left, stage, next, tc.stage, tc.next)
			}
			if d := Evaluate(exp.Add(-DefaultLifetime), nil, nil, now); d.Expired != (stage == Expired) {
				t.Errorf("Evaluate says expired=%v where Notice says %s", d.Expired, stage)
			}
			if next > 0 {
				// Waking next after now enters the next stage.
				if after, _ := Notice(exp, now.Add(next)); after != stage+1 {
					t.Errorf("at now+next the stage is %s, want %s", after, stage+1)
				}
			}
		})
	}
}

func TestHumanize(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{14 * 24 * time.Hour, "14 days"},
		{14*24*time.Hour - 3*time.Second, "14 days"},
		{3 * 24 * time.Hour, "3 days"},
		{72*time.Hour - time.Second, "3 days"},
		{48 * time.Hour, "2 days"},
		{48*time.Hour - time.Second, "48 hours"},
		{36 * time.Hour, "36 hours"},
		{24 * time.Hour, "24 hours"},
		{2 * time.Hour, "2 hours"},
		{90 * time.Minute, "90 minutes"},
		{2 * time.Minute, "2 minutes"},
		{61 * time.Second, "61 seconds"},
		{time.Second, "1 second"},
		{0, "0 seconds"},
		{-36 * time.Hour, "36 hours"},
	} {
		if got := Humanize(tc.d); got != tc.want {
			t.Errorf("Humanize(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

package coalesce

import (
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	const w = 2 * time.Second
	for _, tc := range []struct {
		name         string
		since        time.Time
		held, urgent bool
		now          time.Time
		window       time.Duration
		write        bool
		after        time.Duration
	}{
		{name: "no window writes at once", now: t0, window: 0, write: true},
		{name: "a negative window writes at once", now: t0, window: -time.Second, write: true},
		{name: "urgent writes at once", now: t0, urgent: true, window: w, write: true},
		{name: "urgent while held writes at once", since: t0, held: true, urgent: true, now: t0.Add(time.Millisecond), window: w, write: true},
		{name: "a first change waits its whole window", now: t0, window: w, after: w},
		{name: "a held change waits the rest", since: t0, held: true, now: t0.Add(500 * time.Millisecond), window: w, after: 1500 * time.Millisecond},
		{name: "at the window's end it is written", since: t0, held: true, now: t0.Add(w), window: w, write: true},
		{name: "past the window's end it is written", since: t0, held: true, now: t0.Add(time.Hour), window: w, write: true},
		{name: "a clock gone back waits until the window ends", since: t0, held: true, now: t0.Add(-time.Second), window: w, after: 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write, after := Decide(tc.since, tc.held, tc.urgent, tc.now, tc.window)
			if write != tc.write || after != tc.after {
				t.Errorf("Decide = (%v, %v), want (%v, %v)", write, after, tc.write, tc.after)
			}
		})
	}
}

func TestHolds(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	h := &Holds{Window: 2 * time.Second}
	// A burst of changes: held from the first, written once at its end.
	if write, after := h.Decide("a", false, t0); write || after != 2*time.Second {
		t.Fatalf("First change: (%v, %v), want held for the window", write, after)
	}
	if write, after := h.Decide("a", false, t0.Add(time.Second)); write || after != time.Second {
		t.Fatalf("Second change: (%v, %v), want held for the rest", write, after)
	}
	if h.Held() != 1 {
		t.Fatalf("Held = %d, want 1", h.Held())
	}
	if write, _ := h.Decide("a", false, t0.Add(2*time.Second)); !write {
		t.Fatal("At the window's end: not written")
	}
	// Written: the next change starts a new window.
	if write, after := h.Decide("a", false, t0.Add(3*time.Second)); write || after != 2*time.Second {
		t.Fatalf("After a write: (%v, %v), want a new window", write, after)
	}
	// Keys are apart; Forget drops one.
	if write, _ := h.Decide("b", true, t0.Add(3*time.Second)); !write {
		t.Fatal("b's urgent change held")
	}
	h.Forget("a")
	if h.Held() != 0 {
		t.Fatalf("Held = %d after Forget, want 0", h.Held())
	}
	// The zero value, and nil, hold nothing.
	var zero Holds
	if write, _ := zero.Decide("a", false, t0); !write || zero.Held() != 0 {
		t.Fatal("The zero Holds held a change")
	}
	var none *Holds
	if write, _ := none.Decide("a", false, t0); !write || none.Held() != 0 {
		t.Fatal("A nil Holds held a change")
	}
	none.Forget("a")
}

// Package coalesce decides when a controller writes a status that changed:
// at once when the change is one that users and GitOps tools wait for (a
// new generation observed, an error), otherwise held for a window from the
// first change not yet written, so that a burst of changes (a node's
// sliver made, then Running; one node joining after another) costs one
// write, and the state at the window's end is the one written. A held
// change is never lost: the controller looks again when the window ends
// (Decide's after), and writes whatever the status then is.
package coalesce

import (
	"sync"
	"time"
)

// Holds remembers, per object key, since when a change to its status has
// been held. The zero value, and a nil *Holds, write every change at once.
// It is safe for concurrent use.
type Holds struct {
	// Window is the longest a change is held; 0 holds none.
	Window time.Duration

	mu    sync.Mutex
	since map[string]time.Time
}

// Decide says whether the changed status of key is written now and, when
// it is held, how long until its window ends (the controller requeues the
// object then). An urgent change is written at once.
func (h *Holds) Decide(key string, urgent bool, now time.Time) (write bool, after time.Duration) {
	if h == nil {
		return true, 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	since, held := h.since[key]
	write, after = Decide(since, held, urgent, now, h.Window)
	switch {
	case write:
		delete(h.since, key)
	case !held:
		if h.since == nil {
			h.since = map[string]time.Time{}
		}
		h.since[key] = now
	}
	return write, after
}

// Forget drops key's hold: its status is as written (nothing changed), or
// the object is gone.
func (h *Holds) Forget(key string) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.since, key)
}

// Held is the number of objects whose change is held.
func (h *Holds) Held() int {
	if h == nil {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.since)
}

// Decide is the rule: with no window, or an urgent change, write now; a
// change held since a time whose window has ended is written now; else it
// waits the rest of its window (all of it for a first change, held from
// now).
func Decide(since time.Time, held, urgent bool, now time.Time, window time.Duration) (write bool, after time.Duration) {
	if window <= 0 || urgent {
		return true, 0
	}
	if !held {
		return false, window
	}
	left := since.Add(window).Sub(now)
	if left <= 0 {
		return true, 0
	}
	return false, left
}

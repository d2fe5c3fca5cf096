package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Level is how full node memory is, as judged against a Config.
type Level int

const (
	// OK means memory in use is below WarnAt.
	OK Level = iota
	// Warn means memory in use is at or above WarnAt and below ResetAt.
	Warn
	// Reset means memory in use is at or above ResetAt.
	Reset
)

// String returns "OK", "Warn" or "Reset".
func (l Level) String() string {
	switch l {
	case OK:
		return "OK"
	case Warn:
		return "Warn"
	case Reset:
		return "Reset"
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

// Sliver is one sliver on the node and the memory it uses.
type Sliver struct {
	// Slice is the slice's full name, such as "princeton.alice".
	Slice string
	// Namespace and Pod name the sliver's pod.
	Namespace, Pod string
	// Bytes is the memory the sliver uses, in bytes.
	Bytes uint64
}

// key returns the pod as "namespace/name".
func (s Sliver) key() string { return s.Namespace + "/" + s.Pod }

// Decision is what a Watchdog decided at one check.
type Decision struct {
	// Level is the level of memory in use.
	Level Level
	// InUse is the fraction of node memory in use, in [0, 1].
	InUse float64
	// Reset is the sliver to reset now, or nil when no reset is due.
	Reset *Sliver
	// Notify says whether the caller should log, count and emit an event
	// for this decision. It is always true when Reset is set, never true at
	// level OK, and otherwise true at most once per Config.Interval for the
	// same level (and at once when the level changes).
	Notify bool
	// Reason explains the decision in one sentence, in particular why no
	// sliver is reset at level Reset, as in "a reset happened 40s ago".
	Reason string
}

// Watchdog decides, check after check, whether node memory needs a warning or
// a sliver reset. Make one with New. A Watchdog remembers the time of its last
// reset and of its last notice; it is not safe for concurrent use.
type Watchdog struct {
	// Config is the policy; it must not be changed after New.
	Config

	lastReset   time.Time // zero: no reset yet
	noticeLevel Level     // level of the last notice; OK: none pending
	lastNotice  time.Time
}

// New returns a Watchdog for c, or c's Validate error.
func New(c Config) (*Watchdog, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c.Exempt = slices.Clone(c.Exempt)
	return &Watchdog{Config: c}, nil
}

// LastReset returns the time of the last reset that Check returned, or the
// zero time if none.
func (w *Watchdog) LastReset() time.Time { return w.lastReset }

// Check judges one reading of node memory and the slivers' memory at time now
// and returns the decision. A returned reset counts as done: the next one is
// allowed only MinResetInterval later, even if the caller fails to carry it
// out, so that a failing reset cannot turn into a loop of resets.
//
// At level Reset, the sliver chosen is the one with the most Bytes; ties go
// to the smallest namespace, then pod name, then slice name. Slivers with no
// slice name (pods that are not slivers), with no memory in use, or of a
// slice in Config.Exempt are never chosen.
func (w *Watchdog) Check(mem MemInfo, slivers []Sliver, now time.Time) Decision {
	d := Decision{InUse: mem.InUse()}
	pct := func(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }
	switch {
	case mem.Total == 0:
		d.Reason = "no memory reading (MemTotal is 0)"
	case d.InUse >= w.ResetAt:
		d.Level = Reset
	case d.InUse >= w.WarnAt:
		d.Level = Warn
		d.Reason = fmt.Sprintf("memory in use %s is at or above the warning threshold %s", pct(d.InUse), pct(w.WarnAt))
	default:
		d.Reason = fmt.Sprintf("memory in use %s is below the warning threshold %s", pct(d.InUse), pct(w.WarnAt))
	}
	if d.Level == Reset {
		w.decideReset(&d, slivers, now)
	}
	d.Notify = w.notify(d, now)
	return d
}

// decideReset fills in d.Reset or d.Reason at level Reset.
func (w *Watchdog) decideReset(d *Decision, slivers []Sliver, now time.Time) {
	over := fmt.Sprintf("memory in use %.1f%% is at or above the reset threshold %.1f%%", d.InUse*100, w.ResetAt*100)
	if !w.lastReset.IsZero() {
		if now.Before(w.lastReset) {
			// The clock went back: count the interval again from now,
			// which delays the next reset by at most one interval.
			w.lastReset = now
		}
		if since := now.Sub(w.lastReset); since < w.MinResetInterval {
			d.Reason = fmt.Sprintf("%s, but a reset happened %v ago and the next one is allowed in %v",
				over, since.Truncate(time.Second), roundUp(w.MinResetInterval-since))
			return
		}
	}
	var (
		best          *Sliver
		exempt, empty int
	)
	for i := range slivers {
		s := &slivers[i]
		switch {
		case s.Slice == "":
			continue
		case slices.Contains(w.Exempt, s.Slice):
			exempt++
			continue
		case s.Bytes == 0:
			empty++
			continue
		}
		if best == nil || before(s, best) {
			best = s
		}
	}
	if best == nil {
		var why []string
		if exempt > 0 {
			why = append(why, fmt.Sprintf("%d exempt", exempt))
		}
		if empty > 0 {
			why = append(why, fmt.Sprintf("%d using no memory", empty))
		}
		d.Reason = over + ", but there is no sliver to reset"
		if len(why) > 0 {
			d.Reason += " (" + strings.Join(why, ", ") + ")"
		}
		return
	}
	chosen := *best
	d.Reset = &chosen
	w.lastReset = now
	d.Reason = fmt.Sprintf("%s; sliver %s of slice %s uses the most memory (%d bytes)",
		over, chosen.key(), chosen.Slice, chosen.Bytes)
}

// before reports whether a is a better reset candidate than b.
func before(a, b *Sliver) bool {
	if a.Bytes != b.Bytes {
		return a.Bytes > b.Bytes
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	if a.Pod != b.Pod {
		return a.Pod < b.Pod
	}
	return a.Slice < b.Slice
}

// notify decides whether d is to be announced and records the notice.
func (w *Watchdog) notify(d Decision, now time.Time) bool {
	if d.Level == OK {
		w.noticeLevel = OK
		return false
	}
	due := d.Reset != nil ||
		d.Level != w.noticeLevel ||
		now.Before(w.lastNotice) ||
		now.Sub(w.lastNotice) >= w.Interval
	if due {
		w.noticeLevel, w.lastNotice = d.Level, now
	}
	return due
}

// roundUp rounds d up to a whole second, for reasons meant to be read.
func roundUp(d time.Duration) time.Duration {
	if r := d % time.Second; r != 0 {
		return d - r + time.Second
	}
	return d
}

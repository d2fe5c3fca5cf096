// Package expiry applies PlanetLab's slice expiry rules: a new slice expires
// DefaultLifetime after its creation, and a renewal may set its expiry at
// most MaxAhead ahead of the time it is made. A refused expiry leaves the
// previous one in force. An expired slice loses its slivers but keeps its
// object, so a valid renewal brings it back.
package expiry

import (
	"fmt"
	"time"
)

const (
	// DefaultLifetime is how long a slice lives when no expiry is requested.
	DefaultLifetime = 14 * 24 * time.Hour
	// MaxAhead is how far ahead of now a renewal may set a slice's expiry.
	MaxAhead = 8 * 7 * 24 * time.Hour
)

// Decision is the expiry of a slice as Evaluate sees it.
type Decision struct {
	// ExpiresAt is the expiry in force.
	ExpiresAt time.Time
	// Expired is whether now is at or past ExpiresAt.
	Expired bool
	// Invalid, when not empty, says why the requested expiry was refused.
	Invalid string
	// RequeueAfter is the time left until ExpiresAt, or 0 once expired.
	RequeueAfter time.Duration
}

// Evaluate decides the expiry of a slice created at created, whose spec
// requests requested (nil: none) while inForce (nil: none yet) is the expiry
// accepted before, at time now. All times are compared truncated to the
// second, the precision of metav1.Time.
//
// No request gives created+DefaultLifetime. A request equal to the expiry in
// force stands, even if it has passed since. Otherwise a request must be
// after now and at most now+MaxAhead; a refused request leaves inForce, or
// created+DefaultLifetime if there is none, in force.
func Evaluate(created time.Time, requested, inForce *time.Time, now time.Time) Decision {
	created, now = trunc(created), trunc(now)
	fallback := created.Add(DefaultLifetime)
	if inForce != nil {
		fallback = trunc(*inForce)
	}

	var d Decision
	switch {
	case requested == nil:
		d.ExpiresAt = created.Add(DefaultLifetime)
	case inForce != nil && trunc(*requested).Equal(trunc(*inForce)):
		d.ExpiresAt = trunc(*requested)
	default:
		d.Invalid = Check(*requested, now)
		d.ExpiresAt = trunc(*requested)
		if d.Invalid != "" {
			d.ExpiresAt = fallback
		}
	}

	d.Expired = !now.Before(d.ExpiresAt)
	if !d.Expired {
		d.RequeueAfter = d.ExpiresAt.Sub(now)
	}
	return d
}

// Check says why a newly requested expiry is refused at time now, or returns
// "" when it is allowed: it must be after now and at most now+MaxAhead.
func Check(requested, now time.Time) string {
	req, now := trunc(requested), trunc(now)
	latest := now.Add(MaxAhead)
	switch {
	case req.After(latest):
		return fmt.Sprintf("expiresAt %s is more than 8 weeks ahead; the latest allowed now is %s.",
			format(req), format(latest))
	case !req.After(now):
		return fmt.Sprintf("expiresAt %s is in the past; it must be after %s and at most %s.",
			format(req), format(now), format(latest))
	}
	return ""
}

func trunc(t time.Time) time.Time { return t.Truncate(time.Second) }

func format(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// Stage is how near a slice is to its expiry, as its PI is told.
type Stage int

const (
	// Later: more than LastWeek ahead.
	Later Stage = iota
	// LastWeek: at most a week (LastWeekLeft) left.
	LastWeek
	// LastDay: at most a day (LastDayLeft) left.
	LastDay
	// Expired: the expiry is reached.
	Expired
)

// The notice thresholds: a slice enters its last week with LastWeekLeft
// left, its last day with LastDayLeft left (PlanetLab mailed the PIs at
// both).
const (
	LastWeekLeft = 7 * 24 * time.Hour
	LastDayLeft  = 24 * time.Hour
)

// String names the stage.
func (s Stage) String() string {
	switch s {
	case Later:
		return "Later"
	case LastWeek:
		return "LastWeek"
	case LastDay:
		return "LastDay"
	case Expired:
		return "Expired"
	}
	return fmt.Sprintf("Stage(%d)", int(s))
}

// Notice says how near expiresAt is at time now, and next, the time until
// the stage changes (the next threshold, the expiry itself in the last
// day; 0 once expired). Both times are compared truncated to the second,
// as Evaluate does, so Notice's Expired is Evaluate's Expired, and a wake-up
// next after now sees the next stage. A threshold belongs to the stage it
// starts: exactly 7 days left is LastWeek, exactly 24 hours LastDay,
// exactly 0 Expired.
func Notice(expiresAt, now time.Time) (stage Stage, next time.Duration) {
	left := trunc(expiresAt).Sub(trunc(now))
	switch {
	case left <= 0:
		return Expired, 0
	case left <= LastDayLeft:
		return LastDay, left
	case left <= LastWeekLeft:
		return LastWeek, left - LastDayLeft
	}
	return Later, left - LastWeekLeft
}

// Humanize says a duration as a person reads it: whole days from 2 days,
// else whole hours from 2 hours, else minutes, else seconds, each rounded
// to the nearest ("14 days", "36 hours", "1 minute"). A negative duration
// is said as its absolute value.
func Humanize(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	plural := func(n time.Duration, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d >= 2*24*time.Hour:
		return plural((d+12*time.Hour)/(24*time.Hour), "day")
	case d >= 2*time.Hour:
		return plural((d+30*time.Minute)/time.Hour, "hour")
	case d >= 2*time.Minute:
		return plural((d+30*time.Second)/time.Minute, "minute")
	}
	return plural(d.Round(time.Second)/time.Second, "second")
}

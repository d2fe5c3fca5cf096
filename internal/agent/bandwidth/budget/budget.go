// Package budget decides each slice's daily byte budget on a node: how many
// bytes the slice has sent in the current period and, from that, the ceiling
// (HTB ceil, bit/s) of its traffic class. It is the policy half of PlanetLab's
// bwmon (NodeManager's bwmon.py); the mechanism, the HTB classes set through
// netlink, lives elsewhere and only applies the ceilings decided here.
//
// # Policy
//
// The defaults are PlanetLab's (see DefaultConfig): a slice may send
// 10,546,875 KiB a day. While its usage is at or below 80 % of that budget its
// ceil is the slice's max rate (the node cap). Once usage passes the
// threshold, the ceil is the rate that spreads what is left of the budget over
// what is left of the period:
//
//	ceil = (budget bytes − bytes used) × 8 / (seconds left in the period)
//
// never below the minimum rate and never above the max rate. The minimum rate
// is Config.MinRate (1,000 bit/s) but at most a quarter of the max rate, so a
// slice over its budget still gets a trickle. Traffic to exempt destinations
// (PlanetLab's Internet2 class) is counted separately against its own, larger
// budget (31,640,625 KiB) with the same threshold and formula.
//
// The first time in a period that either ceil is capped, the decision asks
// for one notice (an event on the slice), as bwmon sent one e-mail.
//
// # Periods and counters
//
// The period ("day") is Config.Period long (24 h by default; tests compress
// it to seconds). It starts at a slice's first observation and restarts at
// the first observation at or after its end: usage and the notice flag are
// cleared, and the kernel counters seen then become the new baseline (bytes
// sent between the last observation of the old period and the first of the
// new one are counted in neither, as in bwmon).
//
// Observe is given the kernel's cumulative byte counters of the slice's
// classes; usage grows by the difference from the previous observation. A
// counter that goes backwards means the class was recreated (slice deleted
// and created again, agent or host restart) and now counts from zero. bwmon
// restarted the period then; here the period and the usage counted so far are
// kept, and the new counter value is added as the bytes sent since the class
// was recreated. So a slice cannot clear its day's usage by being deleted and
// created again: its state is kept per slice full name, in a Ledger, not per
// class. When the agent knows a class was deleted it calls Ledger.Detach,
// so that the new class is counted from zero even if its counter has already
// passed the old one's value by the next observation.
package budget

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"time"
)

// KiB is the unit of PlanetLab's budgets.
const KiB = 1024

// PlanetLab's bwmon defaults.
const (
	// DefaultBudget is the daily budget of a slice in bytes (10,546,875 KiB).
	DefaultBudget = 10_546_875 * KiB
	// DefaultExemptBudget is the daily budget of a slice's traffic to exempt
	// destinations in bytes (31,640,625 KiB).
	DefaultExemptBudget = 31_640_625 * KiB
	// DefaultThreshold is the fraction of a budget past which the ceil is
	// lowered.
	DefaultThreshold = 0.8
	// DefaultPeriod is the length of a budget period.
	DefaultPeriod = 24 * time.Hour
	// DefaultMinRate is the floor of a lowered ceil in bit/s, before it is
	// limited to a quarter of the max rate.
	DefaultMinRate = 1000
)

// Config is the budget policy of one slice.
type Config struct {
	// Budget is the bytes a slice may send per period before it is capped
	// to the minimum rate.
	Budget uint64
	// ExemptBudget is the bytes a slice may send per period to exempt
	// destinations, counted apart from Budget.
	ExemptBudget uint64
	// Threshold is the fraction of a budget (0 to 1) past which the ceil
	// is lowered.
	Threshold float64
	// Period is the length of a budget period.
	Period time.Duration
	// MinRate is the lowest ceil in bit/s; the floor actually used is
	// min(MinRate, MaxRate/4).
	MinRate uint64
	// MaxRate is the slice's highest ceil in bit/s (the node cap); it is
	// the ceil while usage is under the threshold. It applies to both the
	// budgeted and the exempt class.
	MaxRate uint64
}

// DefaultConfig returns PlanetLab's policy for a slice whose max rate is
// maxRate bit/s.
func DefaultConfig(maxRate uint64) Config {
	return Config{
		Budget:       DefaultBudget,
		ExemptBudget: DefaultExemptBudget,
		Threshold:    DefaultThreshold,
		Period:       DefaultPeriod,
		MinRate:      DefaultMinRate,
		MaxRate:      maxRate,
	}
}

// Validate reports a policy that cannot be applied: a period that is not
// positive, a threshold outside 0 to 1 or a zero max rate.
func (c Config) Validate() error {
	var errs []error
	if c.Period <= 0 {
		errs = append(errs, fmt.Errorf("period %v is not positive", c.Period))
	}
	if !(c.Threshold >= 0 && c.Threshold <= 1) {
		errs = append(errs, fmt.Errorf("threshold %v is not between 0 and 1", c.Threshold))
	}
	if c.MaxRate == 0 {
		errs = append(errs, errors.New("max rate is zero"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bwbudget: invalid config: %w", err)
	}
	return nil
}

// minRate is the floor of a lowered ceil: MinRate, at most a quarter of
// MaxRate.
func (c Config) minRate() uint64 {
	return min(c.MinRate, c.MaxRate/4)
}

// Usage is one slice's state in the current period. It is kept across
// observations (and agent restarts, through a Ledger) and serialises to JSON.
type Usage struct {
	// PeriodStart is when the current period began; zero before the
	// slice's first observation.
	PeriodStart time.Time `json:"periodStart"`
	// Bytes is what the slice sent in this period, exempt traffic apart.
	Bytes uint64 `json:"bytes"`
	// ExemptBytes is what the slice sent to exempt destinations in this
	// period.
	ExemptBytes uint64 `json:"exemptBytes"`
	// LastCounter is the budgeted class's kernel byte counter at the last
	// observation.
	LastCounter uint64 `json:"lastCounter"`
	// LastExemptCounter is the exempt class's kernel byte counter at the
	// last observation.
	LastExemptCounter uint64 `json:"lastExemptCounter"`
	// Notified is whether the slice has been told in this period that it
	// is capped.
	Notified bool `json:"notified"`
}

// Decision is what Observe decides for a slice.
type Decision struct {
	// Ceil is the ceil of the slice's budgeted class in bit/s.
	Ceil uint64
	// ExemptCeil is the ceil of the slice's exempt class in bit/s.
	ExemptCeil uint64
	// Capped is whether Ceil was lowered because usage passed the
	// threshold (it may still equal the max rate when much time is left).
	Capped bool
	// ExemptCapped is Capped for the exempt class.
	ExemptCapped bool
	// Notify is true the first time in a period that either class is
	// capped: the caller emits one event to the slice.
	Notify bool
	// Reset is true when this observation started a new period: the
	// slice's first observation, or the first after its period ended.
	Reset bool
}

// Observe folds the kernel's cumulative byte counters of the slice's
// budgeted and exempt classes, read at now, into u and decides the classes'
// ceilings. It returns the updated usage, which the caller keeps for the
// next observation.
func Observe(cfg Config, u Usage, counter, exemptCounter uint64, now time.Time) (Usage, Decision) {
	now = now.Round(0) // Wall clock only, so that Usage compares and serialises plainly.
	var d Decision
	if u.PeriodStart.IsZero() || !now.Before(periodEnd(cfg, u)) {
		u = Usage{PeriodStart: now, LastCounter: counter, LastExemptCounter: exemptCounter}
		d.Reset = true
	}
	u.Bytes, u.LastCounter = advance(u.Bytes, u.LastCounter, counter)
	u.ExemptBytes, u.LastExemptCounter = advance(u.ExemptBytes, u.LastExemptCounter, exemptCounter)

	left := periodEnd(cfg, u).Sub(now)
	if p := max(cfg.Period, 0); left > p {
		// The clock went back before the period's start: never spread the
		// budget over more than one period.
		left = p
	}
	d.Ceil, d.Capped = ceil(cfg, cfg.Budget, u.Bytes, left)
	d.ExemptCeil, d.ExemptCapped = ceil(cfg, cfg.ExemptBudget, u.ExemptBytes, left)
	if (d.Capped || d.ExemptCapped) && !u.Notified {
		d.Notify = true
		u.Notified = true
	}
	return u, d
}

// periodEnd is when u's period ends under cfg.
func periodEnd(cfg Config, u Usage) time.Time {
	return u.PeriodStart.Add(cfg.Period)
}

// advance adds to used the bytes a class sent since its counter read last;
// a counter below last belongs to a recreated class that counts from zero.
// It returns the new usage and baseline.
func advance(used, last, counter uint64) (uint64, uint64) {
	delta := counter
	if counter >= last {
		delta = counter - last
	}
	sum, carry := bits.Add64(used, delta, 0)
	if carry != 0 {
		sum = math.MaxUint64
	}
	return sum, counter
}

// thresholdBytes is the usage past which a budget's ceil is lowered.
func thresholdBytes(budget uint64, threshold float64) uint64 {
	switch {
	case !(threshold > 0): // Also NaN.
		return 0
	case threshold >= 1:
		return budget
	}
	t := math.Round(float64(budget) * threshold)
	if t >= float64(budget) {
		return budget
	}
	return uint64(t)
}

// ceil decides the ceil of a class that used bytes of budget with left of
// the period to go, and whether it is capped.
func ceil(cfg Config, budget, used uint64, left time.Duration) (uint64, bool) {
	if used <= thresholdBytes(budget, cfg.Threshold) {
		return cfg.MaxRate, false
	}
	floor := cfg.minRate()
	if used >= budget || left <= 0 {
		return floor, true
	}
	// rate = remaining × 8 bit / left seconds = remaining × 8e9 / left ns,
	// in 128 bits so that neither large budgets nor short periods overflow.
	hi, lo := bits.Mul64(budget-used, 8*uint64(time.Second))
	ns := uint64(left)
	if hi >= ns {
		return cfg.MaxRate, true // The quotient would not fit: above any max rate.
	}
	rate, _ := bits.Div64(hi, lo, ns)
	return min(max(rate, floor), cfg.MaxRate), true
}

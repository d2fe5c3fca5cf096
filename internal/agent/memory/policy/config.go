package policy

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Config is the watchdog's policy. Its values usually come from node agent
// flags; Validate checks them.
type Config struct {
	// WarnAt is the fraction of node memory in use, in (0, 1), from which
	// the level is Warn.
	WarnAt float64
	// ResetAt is the fraction of node memory in use, in [WarnAt, 1), from
	// which the level is Reset and the biggest sliver is reset.
	ResetAt float64
	// MinResetInterval is the least time between two resets.
	MinResetInterval time.Duration
	// Interval is the time between two checks. It is also the least time
	// between two notices (Decision.Notify) at the same level.
	Interval time.Duration
	// Exempt lists slice full names whose slivers are never reset.
	Exempt []string
}

// DefaultConfig returns pl_mom's policy without its reboot: warn at 85 %,
// reset at 90 %, at most one reset per 5 minutes, a check every 30 seconds
// and no exempt slice.
func DefaultConfig() Config {
	return Config{
		WarnAt:           0.85,
		ResetAt:          0.90,
		MinResetInterval: 5 * time.Minute,
		Interval:         30 * time.Second,
	}
}

// Validate reports every problem of c at once, joined with errors.Join, or
// nil when c is usable. The thresholds must satisfy
// 0 < WarnAt <= ResetAt < 1, both durations must be positive, and exempt
// slice names must not be empty.
func (c Config) Validate() error {
	var errs []error
	fraction := func(name string, v float64) bool {
		if math.IsNaN(v) || v <= 0 || v >= 1 {
			errs = append(errs, fmt.Errorf("memwatch: %s must be a fraction of node memory strictly between 0 and 1 (0.85 means 85 %%), got %v", name, v))
			return false
		}
		return true
	}
	warnOK := fraction("WarnAt", c.WarnAt)
	resetOK := fraction("ResetAt", c.ResetAt)
	if warnOK && resetOK && c.WarnAt > c.ResetAt {
		errs = append(errs, fmt.Errorf("memwatch: WarnAt (%v) must not be above ResetAt (%v)", c.WarnAt, c.ResetAt))
	}
	if c.MinResetInterval <= 0 {
		errs = append(errs, fmt.Errorf("memwatch: MinResetInterval must be positive, got %v", c.MinResetInterval))
	}
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("memwatch: Interval must be positive, got %v", c.Interval))
	}
	for i, s := range c.Exempt {
		if s == "" {
			errs = append(errs, fmt.Errorf("memwatch: Exempt[%d] is an empty slice name", i))
		}
	}
	return errors.Join(errs...)
}

package budget

import (
	"math"
	"testing"
	"time"
)

// t0 is the fake clock's start.
var t0 = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

// at is the fake clock d after t0.
func at(d time.Duration) time.Time { return t0.Add(d) }

const (
	maxRate  = 100_000_000 // 100 Mbit/s.
	budget   = 10_800_000_000
	exBudget = 32_400_000_000
	day      = 86_400 // Seconds.
)

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig(maxRate)
	want := Config{
		Budget:       10_546_875 * 1024,
		ExemptBudget: 31_640_625 * 1024,
		Threshold:    0.8,
		Period:       24 * time.Hour,
		MinRate:      1000,
		MaxRate:      maxRate,
	}
	if c != want {
		t.Fatalf("DefaultConfig = %+v, want %+v", c, want)
	}
	if c.Budget != budget || c.ExemptBudget != exBudget {
		t.Fatalf("budgets %d, %d bytes, want %d, %d", c.Budget, c.ExemptBudget, budget, exBudget)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"default", func(*Config) {}, true},
		{"threshold 0", func(c *Config) { c.Threshold = 0 }, true},
		{"threshold 1", func(c *Config) { c.Threshold = 1 }, true},
		{"zero budget", func(c *Config) { c.Budget = 0 }, true},
		{"zero period", func(c *Config) { c.Period = 0 }, false},
		{"negative period", func(c *Config) { c.Period = -time.Second }, false},
		{"threshold above 1", func(c *Config) { c.Threshold = 1.5 }, false},
		{"negative threshold", func(c *Config) { c.Threshold = -0.1 }, false},
		{"NaN threshold", func(c *Config) { c.Threshold = math.NaN() }, false},
		{"zero max rate", func(c *Config) { c.MaxRate = 0 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig(maxRate)
			tc.edit(&c)
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestCeil checks the ceilings decided for a usage at a time in the period.
// Usage starts at the period's start with both counters at zero, so the
// counters passed are the bytes used.
func TestCeil(t *testing.T) {
	def := DefaultConfig(maxRate)
	small := def
	small.MaxRate = 2000 // A quarter is 500 bit/s, under MinRate.
	tiny := def
	tiny.MaxRate = 3 // A quarter rounds down to 0 bit/s.
	for _, tc := range []struct {
		name             string
		cfg              Config
		used, exUsed     uint64
		elapsed          time.Duration
		ceil, exCeil     uint64
		capped, exCapped bool
	}{
		{
			name: "nothing used", cfg: def, elapsed: time.Hour,
			ceil: maxRate, exCeil: maxRate,
		},
		{
			name: "at the threshold", cfg: def, used: budget * 8 / 10, elapsed: 12 * time.Hour,
			ceil: maxRate, exCeil: maxRate,
		},
		{
			// (10,800,000,000 − 8,640,000,001) × 8 / 43,200 s = 399,999.99…
			name: "just past the threshold", cfg: def, used: budget*8/10 + 1, elapsed: 12 * time.Hour,
			ceil: (budget - (budget*8/10 + 1)) * 8 / (day / 2), exCeil: maxRate, capped: true,
		},
		{
			name: "just past the threshold, by hand", cfg: def, used: 8_640_000_001, elapsed: 43_200 * time.Second,
			ceil: 399_999, exCeil: maxRate, capped: true,
		},
		{
			// 1,000,000,000 × 8 / 21,600 s = 370,370.37…
			name: "past the threshold, three quarters through", cfg: def, used: 9_800_000_000, elapsed: 18 * time.Hour,
			ceil: 1_000_000_000 * 8 / 21_600, exCeil: maxRate, capped: true,
		},
		{
			// 2,000,000,000 × 8e9 / 7,200,500,000,000 ns = 2,222,067.91…
			name: "seconds left not whole", cfg: def, used: 8_800_000_000, elapsed: 22*time.Hour - 500*time.Millisecond,
			ceil: 2_000_000_000 * 8_000_000_000 / 7_200_500_000_000, exCeil: maxRate, capped: true,
		},
		{
			name: "formula above the max rate", cfg: def, used: budget*8/10 + 1, elapsed: day*time.Second - 10*time.Second,
			ceil: maxRate, exCeil: maxRate, capped: true,
		},
		{
			// 10 × 8 / 1 s = 80 bit/s, under the 1,000 bit/s floor.
			name: "near the end of the period", cfg: def, used: budget - 10, elapsed: day*time.Second - time.Second,
			ceil: 1000, exCeil: maxRate, capped: true,
		},
		{
			// 8 / 82,800 s rounds to 0 bit/s.
			name: "one byte left", cfg: def, used: budget - 1, elapsed: time.Hour,
			ceil: 1000, exCeil: maxRate, capped: true,
		},
		{
			name: "budget used up", cfg: def, used: budget, elapsed: time.Hour,
			ceil: 1000, exCeil: maxRate, capped: true,
		},
		{
			name: "beyond the budget", cfg: def, used: budget + 5_000_000_000, elapsed: time.Hour,
			ceil: 1000, exCeil: maxRate, capped: true,
		},
		{
			name: "min rate at most a quarter of max", cfg: small, used: budget + 1, elapsed: time.Hour,
			ceil: 500, exCeil: 2000, capped: true,
		},
		{
			name: "min rate of a tiny max", cfg: tiny, used: budget + 1, elapsed: time.Hour,
			ceil: 0, exCeil: 3, capped: true,
		},
		{
			name: "exempt has its own budget", cfg: def, exUsed: budget + 1, elapsed: time.Hour,
			ceil: maxRate, exCeil: maxRate,
		},
		{
			// (32,400,000,000 − 25,920,000,001) × 8 / 43,200 s = 1,199,999.99…
			name: "exempt just past its threshold", cfg: def, exUsed: 25_920_000_001, elapsed: 12 * time.Hour,
			ceil: maxRate, exCeil: 1_199_999, exCapped: true,
		},
		{
			name: "exempt beyond its budget", cfg: def, used: 1, exUsed: exBudget + 1, elapsed: time.Hour,
			ceil: maxRate, exCeil: 1000, exCapped: true,
		},
		{
			name: "both capped", cfg: def, used: budget, exUsed: exBudget, elapsed: time.Hour,
			ceil: 1000, exCeil: 1000, capped: true, exCapped: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := Usage{PeriodStart: t0}
			u, d := Observe(tc.cfg, u, tc.used, tc.exUsed, at(tc.elapsed))
			if u.Bytes != tc.used || u.ExemptBytes != tc.exUsed {
				t.Errorf("usage %d, %d bytes, want %d, %d", u.Bytes, u.ExemptBytes, tc.used, tc.exUsed)
			}
			if d.Ceil != tc.ceil || d.Capped != tc.capped {
				t.Errorf("ceil %d bit/s capped %v, want %d capped %v", d.Ceil, d.Capped, tc.ceil, tc.capped)
			}
			if d.ExemptCeil != tc.exCeil || d.ExemptCapped != tc.exCapped {
				t.Errorf("exempt ceil %d bit/s capped %v, want %d capped %v", d.ExemptCeil, d.ExemptCapped, tc.exCeil, tc.exCapped)
			}
			if want := tc.capped || tc.exCapped; d.Notify != want || u.Notified != want {
				t.Errorf("Notify %v, Notified %v, want %v", d.Notify, u.Notified, want)
			}
			if d.Reset {
				t.Error("Reset within the period")
			}
		})
	}
}

// TestThreshold checks where the ceil is first lowered for various
// thresholds.
func TestThreshold(t *testing.T) {
	for _, tc := range []struct {
		name      string
		budget    uint64
		threshold float64
		last      uint64 // The highest usage that is not capped.
	}{
		{"80 % of PlanetLab's budget", budget, 0.8, 8_640_000_000},
		{"80 % of an odd budget", 1001, 0.8, 801}, // 800.8 rounds to 801.
		{"zero threshold", 1000, 0, 0},
		{"full threshold", 1000, 1, 1000},
		{"zero budget", 0, 0.8, 0},
		{"largest budget", math.MaxUint64, 1, math.MaxUint64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig(maxRate)
			cfg.Budget, cfg.Threshold = tc.budget, tc.threshold
			_, d := Observe(cfg, Usage{PeriodStart: t0}, tc.last, 0, at(time.Hour))
			if d.Capped {
				t.Errorf("capped at %d bytes", tc.last)
			}
			if tc.last == math.MaxUint64 {
				return
			}
			_, d = Observe(cfg, Usage{PeriodStart: t0}, tc.last+1, 0, at(time.Hour))
			if !d.Capped {
				t.Errorf("not capped at %d bytes", tc.last+1)
			}
		})
	}
}

// step is one observation of a slice in a sequence.
type step struct {
	elapsed         time.Duration
	counter, exempt uint64
	bytes, exBytes  uint64 // Usage after the step.
	periodStart     time.Duration
	capped, notify  bool // Capped: either class.
	reset           bool
}

// runSteps observes the steps in order from an empty usage with cfg.
func runSteps(t *testing.T, cfg Config, steps []step) Usage {
	t.Helper()
	var u Usage
	for i, s := range steps {
		var d Decision
		u, d = Observe(cfg, u, s.counter, s.exempt, at(s.elapsed))
		if u.Bytes != s.bytes || u.ExemptBytes != s.exBytes {
			t.Errorf("step %d: usage %d, %d bytes, want %d, %d", i, u.Bytes, u.ExemptBytes, s.bytes, s.exBytes)
		}
		if !u.PeriodStart.Equal(at(s.periodStart)) {
			t.Errorf("step %d: period starts %v, want %v", i, u.PeriodStart, at(s.periodStart))
		}
		if u.LastCounter != s.counter || u.LastExemptCounter != s.exempt {
			t.Errorf("step %d: baseline %d, %d, want %d, %d", i, u.LastCounter, u.LastExemptCounter, s.counter, s.exempt)
		}
		if (d.Capped || d.ExemptCapped) != s.capped {
			t.Errorf("step %d: capped %v, exempt capped %v, want either %v", i, d.Capped, d.ExemptCapped, s.capped)
		}
		if d.Notify != s.notify || d.Reset != s.reset {
			t.Errorf("step %d: Notify %v Reset %v, want %v %v", i, d.Notify, d.Reset, s.notify, s.reset)
		}
	}
	return u
}

// compressed is a policy with a 100 s "day" and a 1,000,000-byte budget
// (800,000 bytes to the threshold) and a 2,000,000-byte exempt budget.
func compressed() Config {
	return Config{
		Budget: 1_000_000, ExemptBudget: 2_000_000, Threshold: 0.8,
		Period: 100 * time.Second, MinRate: 1000, MaxRate: maxRate,
	}
}

func TestSequences(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{
			name: "first observation is the baseline",
			steps: []step{
				{elapsed: 0, counter: 5_000_000, exempt: 7, reset: true},
				{elapsed: time.Second, counter: 5_000_100, exempt: 10, bytes: 100, exBytes: 3},
			},
		},
		{
			name: "period rollover resets usage and notice",
			steps: []step{
				{elapsed: 0, counter: 100, reset: true},
				{elapsed: 50 * time.Second, counter: 900_100, bytes: 900_000, capped: true, notify: true},
				{elapsed: 99 * time.Second, counter: 950_100, bytes: 950_000, capped: true},
				// The period ends at 100 s: the bytes since 99 s belong to neither period.
				{elapsed: 100 * time.Second, counter: 1_000_100, periodStart: 100 * time.Second, reset: true},
				{elapsed: 110 * time.Second, counter: 1_100_100, bytes: 100_000, periodStart: 100 * time.Second},
				{elapsed: 150 * time.Second, counter: 2_000_100, bytes: 1_000_000, periodStart: 100 * time.Second, capped: true, notify: true},
			},
		},
		{
			name: "late observation starts the period anew",
			steps: []step{
				{elapsed: 0, counter: 0, reset: true},
				{elapsed: 10 * time.Second, counter: 900_000, bytes: 900_000, capped: true, notify: true},
				{elapsed: 1000 * time.Second, counter: 950_000, periodStart: 1000 * time.Second, reset: true},
			},
		},
		{
			name: "notice once per period",
			steps: []step{
				{elapsed: 0, counter: 0, reset: true},
				{elapsed: 10 * time.Second, exempt: 1_700_000, exBytes: 1_700_000, capped: true, notify: true},
				{elapsed: 20 * time.Second, counter: 900_000, exempt: 1_700_000, bytes: 900_000, exBytes: 1_700_000, capped: true},
				{elapsed: 30 * time.Second, counter: 2_000_000, exempt: 3_000_000, bytes: 2_000_000, exBytes: 3_000_000, capped: true},
			},
		},
		{
			name: "counter going backwards keeps the period's usage",
			steps: []step{
				{elapsed: 0, counter: 500, exempt: 40, reset: true},
				{elapsed: 10 * time.Second, counter: 700_500, exempt: 1040, bytes: 700_000, exBytes: 1000},
				// The budgeted class was recreated and has counted 200 bytes since.
				{elapsed: 20 * time.Second, counter: 200, exempt: 1540, bytes: 700_200, exBytes: 1500},
				{elapsed: 30 * time.Second, counter: 100_200, exempt: 1540, bytes: 800_200, exBytes: 1500, capped: true, notify: true},
				// Both classes were recreated.
				{elapsed: 40 * time.Second, counter: 0, exempt: 5, bytes: 800_200, exBytes: 1505, capped: true},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runSteps(t, compressed(), tc.steps)
		})
	}
}

// TestCeilOverPeriod follows the ceil of a capped slice through a compressed
// day: it is the formula while it is above the floor and below the max rate.
func TestCeilOverPeriod(t *testing.T) {
	cfg := compressed()
	u, _ := Observe(cfg, Usage{}, 0, 0, t0)
	u, _ = Observe(cfg, u, 900_000, 0, at(time.Second))
	for s := uint64(1); s < 100; s++ {
		var d Decision
		u, d = Observe(cfg, u, 900_000, 0, at(time.Duration(s)*time.Second))
		want := min(max(100_000*8/(100-s), 1000), maxRate)
		if d.Ceil != want || !d.Capped {
			t.Fatalf("at %d s: ceil %d capped %v, want %d", s, d.Ceil, d.Capped, want)
		}
	}
}

func TestClockBack(t *testing.T) {
	cfg := compressed()
	u := Usage{PeriodStart: t0}
	// The clock stepped back 50 s: the remaining 100,000 bytes are spread
	// over one period, not 150 s.
	u, d := Observe(cfg, u, 900_000, 0, at(-50*time.Second))
	if want := uint64(100_000 * 8 / 100); d.Ceil != want {
		t.Errorf("ceil %d, want %d", d.Ceil, want)
	}
	if d.Reset || !u.PeriodStart.Equal(t0) {
		t.Errorf("period restarted at %v", u.PeriodStart)
	}
}

func TestCounterOverflow(t *testing.T) {
	cfg := compressed()
	u := Usage{PeriodStart: t0, Bytes: math.MaxUint64 - 10}
	u, d := Observe(cfg, u, 100, 0, at(time.Second))
	if u.Bytes != math.MaxUint64 || d.Ceil != 1000 {
		t.Fatalf("usage %d, ceil %d; want saturated usage at the floor", u.Bytes, d.Ceil)
	}
}

// FuzzObserve checks that Observe never panics and keeps its ceilings
// between the floor and the max rate.
func FuzzObserve(f *testing.F) {
	f.Add(uint64(budget), uint64(exBudget), 0.8, int64(day*time.Second), uint64(1000), uint64(maxRate),
		uint64(0), uint64(0), uint64(9_000_000_000), uint64(0), int64(time.Hour))
	f.Add(uint64(1), uint64(0), 0.0, int64(1), uint64(0), uint64(1),
		uint64(5), uint64(math.MaxUint64), uint64(0), uint64(math.MaxUint64), int64(-1))
	f.Fuzz(func(t *testing.T, b, eb uint64, th float64, period int64, minR, maxR, bytes, last, counter, exempt uint64, elapsed int64) {
		cfg := Config{Budget: b, ExemptBudget: eb, Threshold: th, Period: time.Duration(period), MinRate: minR, MaxRate: maxR}
		u := Usage{PeriodStart: t0, Bytes: bytes, LastCounter: last}
		u2, d := Observe(cfg, u, counter, exempt, t0.Add(time.Duration(elapsed)))
		floor := min(minR, maxR/4)
		for _, c := range []uint64{d.Ceil, d.ExemptCeil} {
			if c < floor || c > maxR {
				t.Fatalf("ceil %d outside [%d, %d]", c, floor, maxR)
			}
		}
		if !d.Reset && u2.Bytes < u.Bytes {
			t.Fatalf("usage went from %d to %d within a period", u.Bytes, u2.Bytes)
		}
		if u2.LastCounter != counter || u2.LastExemptCounter != exempt {
			t.Fatalf("baseline %d, %d, want %d, %d", u2.LastCounter, u2.LastExemptCounter, counter, exempt)
		}
	})
}

package policy

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// at returns t0 plus s seconds.
func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

// permille returns a reading with p‰ of 1000 kB in use.
func permille(p uint64) MemInfo { return MemInfo{Total: 1000 * 1024, Available: (1000 - p) * 1024} }

var (
	alice = Sliver{Slice: "princeton.alice", Namespace: "princeton-alice", Pod: "node1", Bytes: 300}
	bob   = Sliver{Slice: "mit.bob", Namespace: "mit-bob", Pod: "node1", Bytes: 500}
	carol = Sliver{Slice: "ucb.carol", Namespace: "ucb-carol", Pod: "node1", Bytes: 100}
	sys   = Sliver{Slice: "pl.root", Namespace: "pl-root", Pod: "node1", Bytes: 900}
	noSl  = Sliver{Namespace: "kube-system", Pod: "coredns", Bytes: 950}
)

// step is one Check of a sequence and what it should decide.
type step struct {
	t       int      // seconds after t0
	used    uint64   // permille of memory in use
	slivers []Sliver // nil: alice, bob and carol
	level   Level
	reset   string // the reset pod as namespace/name, "" for none
	notify  bool
	reason  string // a substring of Reason, "" to skip
}

func TestWatchdogCheck(t *testing.T) {
	tests := []struct {
		name   string
		exempt []string
		steps  []step
	}{
		{name: "below warn is OK", steps: []step{
			{t: 0, used: 500, level: OK, reason: "below the warning threshold 85.0%"},
			{t: 30, used: 849, level: OK},
		}},
		{name: "warn band warns without reset", steps: []step{
			{t: 0, used: 850, level: Warn, notify: true, reason: "at or above the warning threshold"},
			{t: 30, used: 899, level: Warn, notify: true},
		}},
		{name: "warn notices at most once per interval", steps: []step{
			{t: 0, used: 870, level: Warn, notify: true},
			{t: 10, used: 870, level: Warn},
			{t: 29, used: 870, level: Warn},
			{t: 30, used: 870, level: Warn, notify: true},
			{t: 31, used: 100, level: OK},
			{t: 32, used: 870, level: Warn, notify: true}, // level changed
		}},
		{name: "reset band chooses the biggest sliver", steps: []step{
			{t: 0, used: 900, level: Reset, reset: "mit-bob/node1", notify: true, reason: "mit-bob/node1 of slice mit.bob uses the most memory (500 bytes)"},
		}},
		{name: "a tie goes to the smallest namespace/name", steps: []step{
			{t: 0, used: 950, level: Reset, reset: "a-ns/b", notify: true, slivers: []Sliver{
				{Slice: "s.z", Namespace: "z-ns", Pod: "a", Bytes: 700},
				{Slice: "s.b", Namespace: "a-ns", Pod: "b", Bytes: 700},
				{Slice: "s.c", Namespace: "a-ns", Pod: "c", Bytes: 700},
				{Slice: "s.d", Namespace: "a-ns", Pod: "d", Bytes: 10},
			}},
		}},
		{name: "a second reset inside the interval is refused, then allowed", steps: []step{
			{t: 0, used: 950, level: Reset, reset: "mit-bob/node1", notify: true},
			{t: 40, used: 950, level: Reset, notify: true, reason: "a reset happened 40s ago and the next one is allowed in 4m20s"},
			{t: 50, used: 950, level: Reset, reason: "a reset happened 50s ago"},
			{t: 299, used: 950, level: Reset, notify: true, reason: "next one is allowed in 1s"},
			{t: 300, used: 950, level: Reset, reset: "mit-bob/node1", notify: true},
			{t: 301, used: 950, level: Reset, reason: "a reset happened 1s ago"},
		}},
		{name: "the interval counts from the last reset, not the last refusal", steps: []step{
			{t: 0, used: 950, level: Reset, reset: "mit-bob/node1", notify: true},
			{t: 100, used: 700, level: OK},
			{t: 320, used: 920, level: Reset, reset: "mit-bob/node1", notify: true},
		}},
		{name: "no slivers means no reset, with a reason", steps: []step{
			{t: 0, used: 950, level: Reset, slivers: []Sliver{}, notify: true, reason: "no sliver to reset"},
			// A refusal for lack of a sliver does not start the interval.
			{t: 1, used: 950, level: Reset, reset: "mit-bob/node1", notify: true},
		}},
		{name: "pods that are not slivers and slivers using nothing are never chosen", steps: []step{
			{t: 0, used: 950, level: Reset, notify: true, reason: "no sliver to reset (1 using no memory)",
				slivers: []Sliver{noSl, {Slice: "a.b", Namespace: "a-b", Pod: "p"}}},
			{t: 1, used: 950, level: Reset, reset: "ucb-carol/node1", notify: true, slivers: []Sliver{noSl, carol}},
		}},
		{name: "exempt slices are never chosen", exempt: []string{"pl.root"}, steps: []step{
			{t: 0, used: 950, level: Reset, reset: "mit-bob/node1", notify: true, slivers: []Sliver{alice, sys, bob}},
			{t: 300, used: 950, level: Reset, notify: true, reason: "no sliver to reset (1 exempt)", slivers: []Sliver{sys}},
		}},
		{name: "a clock that goes back delays the next reset by one interval at most", steps: []step{
			{t: 1000, used: 950, level: Reset, reset: "mit-bob/node1", notify: true},
			{t: 0, used: 950, level: Reset, notify: true, reason: "a reset happened 0s ago"},
			{t: 299, used: 950, level: Reset, notify: true},
			{t: 300, used: 950, level: Reset, reset: "mit-bob/node1", notify: true},
		}},
		{name: "a zero reading is OK with a reason", steps: []step{
			{t: 0, level: OK, reason: "no memory reading"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Exempt = tt.exempt
			w, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				slivers := s.slivers
				if slivers == nil {
					slivers = []Sliver{alice, bob, carol}
				}
				mem := permille(s.used)
				if s.used == 0 {
					mem = MemInfo{}
				}
				d := w.Check(mem, slivers, at(s.t))
				got := ""
				if d.Reset != nil {
					got = d.Reset.key()
				}
				if d.Level != s.level || got != s.reset || d.Notify != s.notify || !strings.Contains(d.Reason, s.reason) {
					t.Errorf("step %d (t=%ds, %d‰): got level %v, reset %q, notify %v, reason %q; want level %v, reset %q, notify %v, reason containing %q",
						i, s.t, s.used, d.Level, got, d.Notify, d.Reason, s.level, s.reset, s.notify, s.reason)
				}
				if d.Reason == "" {
					t.Errorf("step %d: empty reason", i)
				}
				if want := mem.InUse(); d.InUse != want {
					t.Errorf("step %d: InUse %v, want %v", i, d.InUse, want)
				}
			}
		})
	}
}

func TestCheckDoesNotAliasInput(t *testing.T) {
	w, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	in := []Sliver{alice, bob}
	d := w.Check(permille(950), in, t0)
	if d.Reset == nil {
		t.Fatal("no reset")
	}
	d.Reset.Bytes = 1
	if in[1].Bytes != 500 {
		t.Errorf("changing the decision changed the caller's slice: %+v", in[1])
	}
	if got := w.LastReset(); !got.Equal(t0) {
		t.Errorf("LastReset = %v, want %v", got, t0)
	}
}

func TestNewCopiesExempt(t *testing.T) {
	c := DefaultConfig()
	c.Exempt = []string{"pl.root"}
	w, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	c.Exempt[0] = "other"
	if d := w.Check(permille(950), []Sliver{sys}, t0); d.Reset != nil {
		t.Errorf("exempt sliver reset after the caller changed its Config: %+v", d.Reset)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	if w, err := New(Config{}); err == nil || w != nil {
		t.Errorf("New(Config{}) = %v, %v; want an error", w, err)
	}
}

func TestLevelString(t *testing.T) {
	for l, want := range map[Level]string{OK: "OK", Warn: "Warn", Reset: "Reset", Level(7): "Level(7)"} {
		if got := l.String(); got != want {
			t.Errorf("Level(%d).String() = %q, want %q", int(l), got, want)
		}
	}
}

func TestMemInfoInUse(t *testing.T) {
	tests := []struct {
		m    MemInfo
		want float64
	}{
		{MemInfo{Total: 100, Available: 100}, 0},
		{MemInfo{Total: 100, Available: 25}, 0.75},
		{MemInfo{Total: 100, Available: 0}, 1},
		{MemInfo{Total: 100, Available: 200}, 0},
		{MemInfo{}, 0},
	}
	for _, tt := range tests {
		if got := tt.m.InUse(); got != tt.want {
			t.Errorf("%+v.InUse() = %v, want %v", tt.m, got, tt.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	mod := func(f func(*Config)) Config { c := DefaultConfig(); f(&c); return c }
	tests := []struct {
		name string
		c    Config
		want []string // substrings of the error; none: valid
	}{
		{name: "default", c: DefaultConfig()},
		{name: "equal thresholds", c: mod(func(c *Config) { c.WarnAt, c.ResetAt = 0.9, 0.9 })},
		{name: "zero", c: Config{}, want: []string{"WarnAt must be", "ResetAt must be", "MinResetInterval must be positive", "Interval must be positive"}},
		{name: "warn above reset", c: mod(func(c *Config) { c.WarnAt = 0.95 }), want: []string{"WarnAt (0.95) must not be above ResetAt (0.9)"}},
		{name: "percent instead of fraction", c: mod(func(c *Config) { c.WarnAt, c.ResetAt = 85, 90 }), want: []string{"got 85", "got 90", "0.85 means 85 %"}},
		{name: "reset at 1", c: mod(func(c *Config) { c.ResetAt = 1 }), want: []string{"ResetAt must be"}},
		{name: "negative warn", c: mod(func(c *Config) { c.WarnAt = -0.1 }), want: []string{"WarnAt must be"}},
		{name: "NaN", c: mod(func(c *Config) { c.ResetAt = nan() }), want: []string{"ResetAt must be", "got NaN"}},
		{name: "negative reset interval", c: mod(func(c *Config) { c.MinResetInterval = -time.Second }), want: []string{"MinResetInterval must be positive, got -1s"}},
		{name: "empty exempt name", c: mod(func(c *Config) { c.Exempt = []string{"pl.root", ""} }), want: []string{"Exempt[1] is an empty slice name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// nan returns a NaN without importing math in the table.
func nan() float64 { z := 0.0; return z / z }

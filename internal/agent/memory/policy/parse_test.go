package policy

import (
	"math"
	"os"
	"strings"
	"testing"
)

// meminfoSample is the head of a real /proc/meminfo.
const meminfoSample = `MemTotal:       16375640 kB
MemFree:          512344 kB
MemAvailable:    2456346 kB
Buffers:          102400 kB
Cached:          2097152 kB
SwapCached:            0 kB
Active:         10485760 kB
HugePages_Total:       0
HugePages_Free:        0
Hugepagesize:       2048 kB
DirectMap1G:     8388608 kB
`

func TestParseMemInfo(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    MemInfo
		wantErr string // a substring of the error; "": no error
	}{
		{name: "real-looking sample", in: meminfoSample, want: MemInfo{Total: 16375640 * 1024, Available: 2456346 * 1024}},
		{name: "no trailing newline, fields reordered", in: "MemAvailable: 1 kB\nMemTotal: 2 kB", want: MemInfo{Total: 2048, Available: 1024}},
		{name: "missing MemAvailable", in: "MemTotal:       16375640 kB\nMemFree:          512344 kB\n", wantErr: "no MemAvailable"},
		{name: "missing both", in: "MemFree: 1 kB\n", wantErr: "no MemTotal and no MemAvailable"},
		{name: "empty", in: "", wantErr: "no MemTotal"},
		{name: "garbage", in: "\x00\xff hello world\n::::\n", wantErr: "no MemTotal"},
		{name: "bad number", in: "MemTotal: 12x kB\nMemAvailable: 1 kB\n", wantErr: `line 1: MemTotal: bad number "12x"`},
		{name: "negative number", in: "MemTotal: 10 kB\nMemAvailable: -1 kB\n", wantErr: "MemAvailable: bad number"},
		{name: "no unit", in: "MemTotal: 10\nMemAvailable: 1 kB\n", wantErr: "want a number followed by kB"},
		{name: "wrong unit", in: "MemTotal: 10 MB\nMemAvailable: 1 kB\n", wantErr: "want a number followed by kB"},
		{name: "overflow", in: "MemTotal: 18446744073709551615 kB\nMemAvailable: 1 kB\n", wantErr: "overflows"},
		{name: "repeated", in: "MemTotal: 10 kB\nMemTotal: 10 kB\nMemAvailable: 1 kB\n", wantErr: "MemTotal appears twice"},
		{name: "zero total", in: "MemTotal: 0 kB\nMemAvailable: 0 kB\n", wantErr: "MemTotal 0"},
		{name: "very long line", in: strings.Repeat("x", 1<<17) + "\n", wantErr: "reading /proc/meminfo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMemInfo(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseMemInfo() = %+v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				if got != (MemInfo{}) {
					t.Errorf("ParseMemInfo() returned %+v with its error, want the zero MemInfo", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseMemInfo() = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	m, _ := ParseMemInfo(strings.NewReader(meminfoSample))
	if got, want := m.InUse(), 1-2456346.0/16375640.0; math.Abs(got-want) > 1e-12 {
		t.Errorf("sample InUse() = %v, want %v", got, want)
	}
}

func TestParsePressure(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Pressure
		wantErr string // a substring of the error; "": no error
	}{
		{
			name: "some and full",
			in:   "some avg10=1.25 avg60=0.50 avg300=0.10 total=123456\nfull avg10=0.75 avg60=0.25 avg300=0.00 total=65432\n",
			want: Pressure{
				Some:    PressureLine{Avg10: 1.25, Avg60: 0.5, Avg300: 0.1, Total: 123456},
				Full:    PressureLine{Avg10: 0.75, Avg60: 0.25, Total: 65432},
				HasFull: true,
			},
		},
		{
			name: "a kernel with only some",
			in:   "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
			want: Pressure{},
		},
		{
			name: "unknown keys and lines are ignored",
			in:   "some avg10=1.00 avg60=2.00 avg300=3.00 total=4 avg3600=9.9\nwhole avg10=x\n\nfull total=5 avg300=0 avg60=0 avg10=100\n",
			want: Pressure{Some: PressureLine{1, 2, 3, 4}, Full: PressureLine{100, 0, 0, 5}, HasFull: true},
		},
		{name: "empty", in: "", wantErr: `no "some" line`},
		{name: "only full", in: "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", wantErr: `no "some" line`},
		{name: "garbage", in: "\x00\x01 nonsense\n", wantErr: `no "some" line`},
		{name: "missing total", in: "some avg10=0.00 avg60=0.00 avg300=0.00\n", wantErr: "total is missing"},
		{name: "not key=value", in: "some avg10 0.00\n", wantErr: `field "avg10" is not key=value`},
		{name: "bad avg", in: "some avg10=abc avg60=0.00 avg300=0.00 total=0\n", wantErr: "avg10: want a percentage"},
		{name: "avg above 100", in: "some avg10=100.5 avg60=0.00 avg300=0.00 total=0\n", wantErr: "avg10: want a percentage"},
		{name: "negative avg", in: "some avg10=-1 avg60=0.00 avg300=0.00 total=0\n", wantErr: "avg10: want a percentage"},
		{name: "NaN avg", in: "some avg10=NaN avg60=0.00 avg300=0.00 total=0\n", wantErr: "avg10: want a percentage"},
		{name: "bad total", in: "some avg10=0 avg60=0.00 avg300=0.00 total=-3\n", wantErr: `total: bad number "-3"`},
		{name: "repeated key", in: "some avg10=0 avg10=0 avg60=0.00 avg300=0.00 total=0\n", wantErr: "avg10 appears twice"},
		{name: "repeated line", in: "some avg10=0 avg60=0 avg300=0 total=0\nsome avg10=0 avg60=0 avg300=0 total=0\n", wantErr: `line 2: "some" appears twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePressure(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePressure() = %+v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParsePressure() = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func FuzzParseMemInfo(f *testing.F) {
	for _, s := range []string{
		meminfoSample,
		"MemTotal: 2 kB\nMemAvailable: 1 kB",
		"MemTotal: 2 kB\nMemAvailable: 3 kB\n",
		"MemTotal: 18014398509481983 kB\nMemAvailable: 0 kB\n",
		"MemTotal:\nMemAvailable: kB kB\n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		m, err := ParseMemInfo(strings.NewReader(in))
		if err != nil {
			if m != (MemInfo{}) {
				t.Fatalf("error %v came with a non-zero MemInfo %+v", err, m)
			}
			return
		}
		if m.Total == 0 {
			t.Fatalf("no error but MemTotal 0 from %q", in)
		}
		if u := m.InUse(); math.IsNaN(u) || u < 0 || u > 1 {
			t.Fatalf("InUse() = %v, want [0, 1]", u)
		}
	})
}

func FuzzParsePressure(f *testing.F) {
	for _, s := range []string{
		"some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
		"some avg10=1.25 avg60=0.50 avg300=0.10 total=123456\n",
		"some avg10=1e2 avg60=0x1p-2 avg300=Inf total=18446744073709551615\n",
		"some total=1 total=2\n",
		"full\nsome\n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, err := ParsePressure(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, l := range []PressureLine{p.Some, p.Full} {
			for _, a := range []float64{l.Avg10, l.Avg60, l.Avg300} {
				if math.IsNaN(a) || a < 0 || a > 100 {
					t.Fatalf("average %v out of [0, 100] from %q", a, in)
				}
			}
		}
		if !p.HasFull && p.Full != (PressureLine{}) {
			t.Fatalf("Full %+v set without HasFull from %q", p.Full, in)
		}
	})
}

// TestParseLiveFiles parses this machine's own files when it has them.
func TestParseLiveFiles(t *testing.T) {
	for _, c := range []struct {
		path  string
		parse func(*os.File) error
	}{
		{"/proc/meminfo", func(f *os.File) error { _, err := ParseMemInfo(f); return err }},
		{"/proc/pressure/memory", func(f *os.File) error { _, err := ParsePressure(f); return err }},
	} {
		f, err := os.Open(c.path)
		if err != nil {
			t.Logf("skipping %s: %v", c.path, err)
			continue
		}
		if err := c.parse(f); err != nil {
			t.Errorf("%s: %v", c.path, err)
		}
		f.Close()
	}
}

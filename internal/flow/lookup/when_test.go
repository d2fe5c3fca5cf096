package lookup

import (
	"strings"
	"testing"
	"time"
)

// TestParseWhen: the forms a person elsewhere writes a time in, read in the
// zone field when the time has none; refusals say what form is expected.
func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 12, 2, 13, 30, 0, 0, time.UTC)
	utc := func(s string) time.Time { v, _ := time.Parse(time.RFC3339Nano, s); return v }
	for _, c := range []struct {
		in, zone string
		want     time.Time
	}{
		{"now", "", now},
		{" NOW ", "Europe/Paris", now},
		{"2026-12-02T10:15", "", utc("2026-12-02T10:15:00Z")},             // datetime-local, UTC by default
		{"2026-12-02T10:15:30", "", utc("2026-12-02T10:15:30Z")},          // datetime-local with step=1
		{"2026-12-02 10:15", "Europe/Paris", utc("2026-12-02T09:15:00Z")}, // winter: +01:00
		{"2026-07-02 10:15", "Europe/Paris", utc("2026-07-02T08:15:00Z")}, // summer: +02:00
		{"2026-12-02 10:15", "America/New_York", utc("2026-12-02T15:15:00Z")},
		{"2026-12-02 10:15", "+05:30", utc("2026-12-02T04:45:00Z")},
		{"2026-12-02 10:15", "UTC-5", utc("2026-12-02T15:15:00Z")},
		{"2026-12-02 10:15", "gmt+2", utc("2026-12-02T08:15:00Z")},
		{"2026-12-02T10:15:00Z", "Asia/Tokyo", utc("2026-12-02T10:15:00Z")}, // its own zone wins
		{"2026-12-02T10:15:00+01:00", "", utc("2026-12-02T09:15:00Z")},
		{"2026-12-02T10:15:00.123456789-0800", "", utc("2026-12-02T18:15:00.123456789Z")},
		{"2026-12-02 10:15 UTC", "Europe/Paris", utc("2026-12-02T10:15:00Z")},
		{"2026-12-02 10:15 +2", "", utc("2026-12-02T08:15:00Z")},
		{"2026-12-02 9:05", "", utc("2026-12-02T09:05:00Z")},
		{"1796218200", "Europe/Paris", utc("2026-12-02T13:30:00Z")}, // Unix seconds
	} {
		got, err := parseWhen(c.in, c.zone, now)
		if err != nil || !got.Equal(c.want) || got.Location() != time.UTC {
			t.Errorf("parseWhen(%q, %q) = %v, %v; want %v in UTC", c.in, c.zone, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, zone, want string }{
		{"yesterday", "", "expected a date and time"},
		{"12/02/2026 10:15", "", "expected a date and time"},
		{"2026-02-31 10:00", "", "expected a date and time"},
		{"2026-12-02 24:00", "", "expected a date and time"},
		{"2026-12-02 10:15 CET", "", "expected a date and time"}, // abbreviations are ambiguous
		{"2026-12-02 10:15 +15:00", "", "expected a date and time"},
		{"0001-01-01T00:00:00Z", "", "year out of range"},
		{"12345", "", "expected a date and time"},
		{"2026-12-02 10:15", "Mars/Olympus", "expected a time zone"},
		{"2026-12-02 10:15", "Local", "expected a time zone"},
		{"2026-12-02 10:15", "../../etc/passwd", "expected a time zone"},
		{"2026-12-02 10:15", "+25:00", "expected a time zone"},
		{"2026-12-02 10:15", strings.Repeat("A", 100), "expected a time zone"},
	} {
		if got, err := parseWhen(c.in, c.zone, now); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseWhen(%q, %q) = %v, %v; want an error saying %q", c.in, c.zone, got, err, c.want)
		}
	}
}

// FuzzParseWhen: any input is refused or read as a time in range, in UTC.
func FuzzParseWhen(f *testing.F) {
	for _, s := range []string{"now", "2026-12-02T10:15", "2026-12-02 10:15 +01:00", "1796218200", "2026-12-02T10:15:00.5Z"} {
		f.Add(s, "Europe/Paris")
	}
	f.Add("2026-12-02 10:15", "UTC+14")
	now := time.Date(2026, 12, 2, 13, 30, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s, zone string) {
		got, err := parseWhen(s, zone, now)
		if err != nil {
			if got != (time.Time{}) {
				t.Fatalf("Refused %q with a time %v", s, got)
			}
			return
		}
		if got.Location() != time.UTC || got.Year() < 1970 || got.Year() > 9999 {
			t.Fatalf("parseWhen(%q, %q) = %v: not in UTC or out of range", s, zone, got)
		}
	})
}

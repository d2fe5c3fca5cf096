package policy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Pressure is the content of /proc/pressure/memory: pressure stall
// information (PSI).
type Pressure struct {
	// Some is the share of time in which at least one task stalled on memory.
	Some PressureLine
	// Full is the share of time in which all non-idle tasks stalled on
	// memory at once. It is zero when HasFull is false.
	Full PressureLine
	// HasFull says whether the kernel reported a "full" line.
	HasFull bool
}

// PressureLine is one line of a PSI file.
type PressureLine struct {
	// Avg10, Avg60 and Avg300 are the percentages of stalled time over the
	// last 10, 60 and 300 seconds, in [0, 100].
	Avg10, Avg60, Avg300 float64
	// Total is the total stalled time in microseconds since boot.
	Total uint64
}

// ParsePressure reads /proc/pressure/memory, whose lines look like
//
//	some avg10=0.00 avg60=0.00 avg300=0.00 total=0
//	full avg10=0.00 avg60=0.00 avg300=0.00 total=0
//
// The "some" line is required; the "full" line is optional (HasFull tells).
// Each line needs avg10, avg60, avg300 and total; unknown keys and lines of
// other kinds are ignored so that a newer kernel's additions do not break the
// agent. A repeated line or key, or a malformed value, is an error.
func ParsePressure(r io.Reader) (Pressure, error) {
	var (
		p        Pressure
		haveSome bool
		sc       = bufio.NewScanner(r)
		n        int
	)
	for sc.Scan() {
		n++
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		var dst *PressureLine
		var seen *bool
		switch fields[0] {
		case "some":
			dst, seen = &p.Some, &haveSome
		case "full":
			dst, seen = &p.Full, &p.HasFull
		default:
			continue
		}
		if *seen {
			return Pressure{}, fmt.Errorf("memwatch: PSI line %d: %q appears twice", n, fields[0])
		}
		pl, err := parsePressureLine(fields[1:])
		if err != nil {
			return Pressure{}, fmt.Errorf("memwatch: PSI line %d (%s): %w", n, fields[0], err)
		}
		*dst, *seen = pl, true
	}
	if err := sc.Err(); err != nil {
		return Pressure{}, fmt.Errorf("memwatch: reading PSI: %w", err)
	}
	if !haveSome {
		return Pressure{}, errors.New(`memwatch: PSI has no "some" line`)
	}
	return p, nil
}

// parsePressureLine parses the key=value fields of one PSI line.
func parsePressureLine(fields []string) (PressureLine, error) {
	var (
		pl   PressureLine
		seen = map[string]bool{}
	)
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return PressureLine{}, fmt.Errorf("field %q is not key=value", f)
		}
		var avg *float64
		switch k {
		case "avg10":
			avg = &pl.Avg10
		case "avg60":
			avg = &pl.Avg60
		case "avg300":
			avg = &pl.Avg300
		case "total":
		default:
			continue
		}
		if seen[k] {
			return PressureLine{}, fmt.Errorf("%s appears twice", k)
		}
		seen[k] = true
		if avg == nil {
			t, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return PressureLine{}, fmt.Errorf("total: bad number %q", v)
			}
			pl.Total = t
			continue
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(x) || x < 0 || x > 100 {
			return PressureLine{}, fmt.Errorf("%s: want a percentage in [0, 100], got %q", k, v)
		}
		*avg = x
	}
	for _, k := range []string{"avg10", "avg60", "avg300", "total"} {
		if !seen[k] {
			return PressureLine{}, fmt.Errorf("%s is missing", k)
		}
	}
	return pl, nil
}

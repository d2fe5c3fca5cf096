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

// MemInfo is the part of /proc/meminfo that the watchdog uses.
type MemInfo struct {
	// Total is MemTotal in bytes.
	Total uint64
	// Available is MemAvailable in bytes.
	Available uint64
}

// InUse returns the fraction of memory in use, (Total − Available) / Total,
// in [0, 1]. It is 0 when Total is 0 and when Available exceeds Total.
func (m MemInfo) InUse() float64 {
	if m.Total == 0 || m.Available >= m.Total {
		return 0
	}
	return float64(m.Total-m.Available) / float64(m.Total)
}

// ParseMemInfo reads /proc/meminfo. Values are in kB (1024 bytes) there and
// in bytes in the result. MemTotal and MemAvailable are required (the kernel
// has had MemAvailable since 3.14); a missing, repeated or malformed one is
// an error, as is a MemTotal of 0. Other lines are ignored.
func ParseMemInfo(r io.Reader) (MemInfo, error) {
	var (
		m                    MemInfo
		haveTotal, haveAvail bool
		sc                   = bufio.NewScanner(r)
		line                 int
	)
	for sc.Scan() {
		line++
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *uint64
		var seen *bool
		switch key {
		case "MemTotal":
			dst, seen = &m.Total, &haveTotal
		case "MemAvailable":
			dst, seen = &m.Available, &haveAvail
		default:
			continue
		}
		if *seen {
			return MemInfo{}, fmt.Errorf("memwatch: /proc/meminfo line %d: %s appears twice", line, key)
		}
		v, err := parseKB(rest)
		if err != nil {
			return MemInfo{}, fmt.Errorf("memwatch: /proc/meminfo line %d: %s: %w", line, key, err)
		}
		*dst, *seen = v, true
	}
	if err := sc.Err(); err != nil {
		return MemInfo{}, fmt.Errorf("memwatch: reading /proc/meminfo: %w", err)
	}
	var missing []string
	if !haveTotal {
		missing = append(missing, "MemTotal")
	}
	if !haveAvail {
		missing = append(missing, "MemAvailable")
	}
	if len(missing) > 0 {
		return MemInfo{}, fmt.Errorf("memwatch: /proc/meminfo has no %s", strings.Join(missing, " and no "))
	}
	if m.Total == 0 {
		return MemInfo{}, errors.New("memwatch: /proc/meminfo has MemTotal 0")
	}
	return m, nil
}

// parseKB parses the value part of a meminfo line, such as "  16384 kB", and
// returns it in bytes.
func parseKB(s string) (uint64, error) {
	f := strings.Fields(s)
	if len(f) != 2 || f[1] != "kB" {
		return 0, fmt.Errorf("want a number followed by kB, got %q", strings.TrimSpace(s))
	}
	v, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", f[0])
	}
	if v > math.MaxUint64/1024 {
		return 0, fmt.Errorf("%d kB overflows a byte count", v)
	}
	return v * 1024, nil
}

package lookup

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // zone names work in the image, which has no zoneinfo
)

// Forms the page accepts for a time, as a person elsewhere would write one:
// "now"; a date and time with a zone or offset (RFC 3339, "2026-12-02
// 10:15 +01:00", "2026-12-02 10:15 UTC", "... CET"-style abbreviations
// are not accepted: they are ambiguous); a date and time without one, read
// in the zone field (UTC when empty), which is what the page's
// datetime-local input sends; or Unix seconds.
var (
	errTimeForm = errors.New("expected a date and time such as 2026-12-02 10:15 (in the time zone field, UTC if empty), " +
		"one with an offset such as 2026-12-02T10:15:00+01:00, Unix seconds, or now")
	errZoneForm = errors.New("expected a time zone such as UTC, Europe/Paris or America/New_York, or an offset such as +01:00 or UTC-5")
)

// maxZoneLen bounds a zone field (IANA names are at most about 30 bytes).
const maxZoneLen = 64

var (
	// dateTime is a date and time with optional seconds and fraction, "T"
	// or a space between them, and an optional trailing zone or offset.
	dateTime = regexp.MustCompile(`^(\d{4})-(\d{2})-(\d{2})[T ](\d{1,2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?\s*(Z|[+-]\d{2}:?\d{2}|[+-]\d{1,2}|UTC|GMT)?$`)
	// offset is a UTC offset as a zone field: +01:00, -0500, +2, UTC+2,
	// GMT-05:30.
	offset = regexp.MustCompile(`^(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?$`)
)

// parseZone reads a zone field: empty or UTC, an IANA name, or an offset.
func parseZone(z string) (*time.Location, error) {
	z = strings.TrimSpace(z)
	switch {
	case z == "", strings.EqualFold(z, "UTC"), strings.EqualFold(z, "GMT"), z == "Z":
		return time.UTC, nil
	case len(z) > maxZoneLen:
		return nil, errZoneForm
	}
	if m := offset.FindStringSubmatch(strings.ToUpper(z)); m != nil {
		return offsetZone(m[1], m[2], m[3])
	}
	if strings.ContainsAny(z, " \\") || strings.Contains(z, "..") || strings.HasPrefix(z, "/") {
		return nil, errZoneForm
	}
	loc, err := time.LoadLocation(z)
	if err != nil || loc.String() == "Local" {
		return nil, errZoneForm
	}
	return loc, nil
}

// offsetZone is a fixed zone of sign, hours and (optional) minutes.
func offsetZone(sign, hh, mm string) (*time.Location, error) {
	h, _ := strconv.Atoi(hh)
	m := 0
	if mm != "" {
		m, _ = strconv.Atoi(mm)
	}
	if h > 14 || m > 59 {
		return nil, errZoneForm
	}
	secs := (h*60 + m) * 60
	if sign == "-" {
		secs = -secs
	}
	name := fmt.Sprintf("UTC%s%02d:%02d", sign, h, m)
	return time.FixedZone(name, secs), nil
}

// parseWhen reads a time field in the zone of the zone field; now is the
// time "now" means.
func parseWhen(s, zone string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "now") {
		return now.UTC(), nil
	}
	loc, err := parseZone(zone)
	if err != nil {
		return time.Time{}, err
	}
	if len(s) > 64 {
		return time.Time{}, errTimeForm
	}
	if secs, err := strconv.ParseInt(s, 10, 64); err == nil && len(s) >= 9 && len(s) <= 11 {
		return inRange(time.Unix(secs, 0))
	}
	m := dateTime.FindStringSubmatch(s)
	if m == nil {
		return time.Time{}, errTimeForm
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	if m[8] != "" { // a zone or offset in the time wins over the field
		switch z := m[8]; z {
		case "Z", "UTC", "GMT":
			loc = time.UTC
		default:
			om := offset.FindStringSubmatch(z)
			if om == nil {
				return time.Time{}, errTimeForm
			}
			if loc, err = offsetZone(om[1], om[2], om[3]); err != nil {
				return time.Time{}, errTimeForm
			}
		}
	}
	var nanos int
	if f := m[7]; f != "" {
		nanos, _ = strconv.Atoi((f[1:] + "000000000")[:9])
	}
	year, month, day, hour, minute, sec := n(1), time.Month(n(2)), n(3), n(4), n(5), 0
	if m[6] != "" {
		sec = n(6)
	}
	if month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, errTimeForm
	}
	t := time.Date(year, month, day, hour, minute, min(sec, 59), nanos, loc)
	if t.Day() != day { // 31 February and the like
		return time.Time{}, errTimeForm
	}
	return inRange(t)
}

// inRange refuses years the store cannot hold; it returns the time in UTC.
func inRange(t time.Time) (time.Time, error) {
	if y := t.UTC().Year(); y < 1970 || y > 9999 {
		return time.Time{}, errors.New("year out of range (1970 to 9999)")
	}
	return t.UTC(), nil
}

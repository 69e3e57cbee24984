package processors

import (
	"errors"
	"math"
	"time"
)

// parseISOTimestamp reads what Python's datetime.isoformat() writes, returning
// Unix nanoseconds:
//
//	2025-06-08T18:27:17            (no fraction when microseconds are zero)
//	2025-06-08T18:27:17.476623     (no offset: UTC)
//	2025-06-24T21:37:35.033561+00:00
//
// It also accepts a space instead of T, 1 to 9 fractional digits, a trailing Z,
// offsets with seconds (+05:30:15, which isoformat writes for odd zones) and
// offsets without a colon. It is hand-written because time.Parse needs one
// layout per variant and this runs once per message.
func parseISOTimestamp(s string) (int64, error) {
	if len(s) < len("2006-01-02T15:04:05") {
		return 0, errTimestampShape
	}
	year, ok1 := digits(s[0:4])
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	hour, ok4 := digits(s[11:13])
	minute, ok5 := digits(s[14:16])
	sec, ok6 := digits(s[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || s[4] != '-' || s[7] != '-' ||
		(s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' || s[16] != ':' {
		return 0, errTimestampShape
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return 0, errTimestampRange
	}
	rest := s[19:]
	var nanos int64
	if len(rest) > 0 && (rest[0] == '.' || rest[0] == ',') {
		n := 1
		scale := int64(100_000_000)
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			if n > 9 {
				return 0, errTimestampFraction
			}
			nanos += int64(rest[n]-'0') * scale
			scale /= 10
			n++
		}
		if n == 1 {
			return 0, errTimestampFraction
		}
		rest = rest[n:]
	}
	var offset int64 // seconds east of UTC
	switch {
	case rest == "", rest == "Z", rest == "z":
	case rest[0] == '+' || rest[0] == '-':
		off, ok := parseOffset(rest[1:])
		if !ok {
			return 0, errTimestampOffset
		}
		if rest[0] == '-' {
			off = -off
		}
		offset = off
	default:
		return 0, errTimestampShape
	}
	// time.Date does the calendar arithmetic; no allocation with time.UTC.
	secs := time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC).Unix() - offset
	// UnixNano's range is 1677-09-21 to 2262-04-11.
	if secs < math.MinInt64/1_000_000_000+1 || secs > math.MaxInt64/1_000_000_000-1 {
		return 0, errTimestampRange
	}
	return secs*1_000_000_000 + nanos, nil
}

var (
	errTimestampShape    = errors.New("is not an ISO-8601 date-time like 2025-06-24T21:37:35.033561+00:00")
	errTimestampRange    = errors.New("has a date or time field out of range (or lies outside 1678-2262)")
	errTimestampFraction = errors.New("has a fraction that is not 1 to 9 digits")
	errTimestampOffset   = errors.New("has an offset that is not ±HH:MM, ±HHMM or ±HH:MM:SS")
)

// parseOffset reads HH:MM, HHMM, HH:MM:SS or HH:MM:SS.ffffff (the fraction is
// ignored past whole seconds, as no real zone has one), returning seconds.
func parseOffset(s string) (int64, bool) {
	if len(s) < 4 {
		return 0, false
	}
	h, ok := digits(s[0:2])
	if !ok || h > 23 {
		return 0, false
	}
	s = s[2:]
	if s[0] == ':' {
		s = s[1:]
	}
	if len(s) < 2 {
		return 0, false
	}
	m, ok := digits(s[0:2])
	if !ok || m > 59 {
		return 0, false
	}
	s = s[2:]
	var sec int
	if len(s) > 0 {
		if s[0] != ':' || len(s) < 3 {
			return 0, false
		}
		sec, ok = digits(s[1:3])
		if !ok || sec > 59 {
			return 0, false
		}
		s = s[3:]
		if len(s) > 0 {
			if s[0] != '.' || len(s) == 1 {
				return 0, false
			}
			for i := 1; i < len(s); i++ {
				if s[i] < '0' || s[i] > '9' {
					return 0, false
				}
			}
		}
	}
	return int64(h)*3600 + int64(m)*60 + int64(sec), true
}

func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// truncateTime floors ns to a multiple of unit (floor, not toward zero, so
// instants before 1970 land on the start of their unit like later ones).
func truncateTime(ns, unit int64) int64 {
	if unit <= 1 {
		return ns
	}
	r := ns % unit
	if r < 0 {
		r += unit
	}
	return ns - r
}

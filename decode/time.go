package decode

import "math"

// parseTimestamp parses the timestamps the streams carry, RFC 3339 and its
// common relatives, into Unix nanoseconds without allocating (time.Parse
// allocates a *Location for every non-UTC offset):
//
//	2020-06-08T04:23:54.618073+00:00   MediaWiki @timestamp (µs)
//	2022-06-08T14:24:55.175Z           Event Platform meta.dt
//	2023-01-18T15:41:07                httpd %{%Y-%m-%dT%H:%M:%S}t: no zone, servers run UTC
//	2023-01-18 15:41:07+0000           a space for the T, an offset without a colon
//
// frac reports whether the text carried fractional seconds. ok is false
// for anything else, including impossible dates and times outside the
// range of int64 nanoseconds.
func parseTimestamp(b []byte) (ns int64, frac, ok bool) {
	if len(b) < 19 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != 't' && b[10] != ' ') || b[13] != ':' || b[16] != ':' {
		return 0, false, false
	}
	year, ok1 := digits(b[0:4])
	month, ok2 := digits(b[5:7])
	day, ok3 := digits(b[8:10])
	hour, ok4 := digits(b[11:13])
	minute, ok5 := digits(b[14:16])
	sec, ok6 := digits(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return 0, false, false
	}
	i := 19
	var nanos int64
	if i < len(b) && b[i] == '.' {
		i++
		start := i
		scale := int64(100_000_000)
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			nanos += int64(b[i]-'0') * scale // digits past the ninth add 0
			scale /= 10
			i++
		}
		if i == start {
			return 0, false, false
		}
		frac = true
	}
	var offset int64
	switch {
	case i == len(b):
		// No zone: UTC.
	case b[i] == 'Z' || b[i] == 'z':
		i++
	case b[i] == '+' || b[i] == '-':
		rest := b[i+1:]
		var hh, mm int64
		var okh, okm bool
		switch {
		case len(rest) == 5 && rest[2] == ':':
			hh, okh = digits(rest[0:2])
			mm, okm = digits(rest[3:5])
		case len(rest) == 4:
			hh, okh = digits(rest[0:2])
			mm, okm = digits(rest[2:4])
		case len(rest) == 2:
			hh, okh = digits(rest[0:2])
			okm = true
		}
		if !okh || !okm || hh > 23 || mm > 59 {
			return 0, false, false
		}
		offset = hh*3600 + mm*60
		if b[i] == '-' {
			offset = -offset
		}
		i = len(b)
	default:
		return 0, false, false
	}
	if i != len(b) {
		return 0, false, false
	}
	secs := daysFromCivil(year, month, day)*86400 + hour*3600 + minute*60 + sec - offset
	// int64 nanoseconds reach from 1677 to 2262.
	if secs <= math.MinInt64/1_000_000_000 || secs >= math.MaxInt64/1_000_000_000 {
		return 0, false, false
	}
	return secs*1e9 + nanos, frac, true
}

// digits is parseDigits for the fixed-width fields of a timestamp, as the
// int64 their arithmetic wants.
func digits(b []byte) (int64, bool) {
	u, ok := parseDigits(b)
	return int64(u), ok
}

func daysIn(month, year int64) int64 {
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

// daysFromCivil is the number of days from 1970-01-01 to the given date of
// the proleptic Gregorian calendar (Howard Hinnant's days_from_civil).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 { // only year 0000 in January or February gets here
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

package simulate

import (
	"time"
	"unicode/utf8"
)

// JSON is appended by hand into reused buffers: the generator must emit
// hundreds of thousands of records per second, which reflection-based
// encoding/json cannot. Constant keys and values known to need no escaping
// are appended raw; everything else goes through appendEscaped.

const hexDigits = "0123456789abcdef"

// appendEscaped appends s JSON-escaped, without quotes. Invalid UTF-8
// becomes U+FFFD, so the output is always valid JSON.
func appendEscaped[T string | []byte](b []byte, s T) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
			if r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, `\ufffd`...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	return append(b, s[start:]...)
}

// appendUUID appends a version-4 UUID made of hi and lo.
func appendUUID(b []byte, hi, lo uint64) []byte {
	hi = hi&^(0xf<<12) | 0x4<<12 // version 4
	lo = lo&^(0x3<<62) | 0x2<<62 // RFC 4122 variant
	var u [16]byte
	for i := range 8 {
		u[i] = byte(hi >> (56 - 8*i))
		u[8+i] = byte(lo >> (56 - 8*i))
	}
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return b
}

// timeCache formats UTC timestamps fast: the date is formatted once per day.
type timeCache struct {
	day  int64
	date []byte // "2006-01-02"
}

// appendSecond appends "2006-01-02T15:04:05" for ns (Unix ns, >= 0).
func (c *timeCache) appendSecond(b []byte, ns int64) []byte {
	sec := ns / 1e9
	day := sec / 86400
	if c.date == nil || day != c.day {
		c.day = day
		c.date = time.Unix(day*86400, 0).UTC().AppendFormat(c.date[:0], "2006-01-02")
	}
	b = append(b, c.date...)
	s := sec % 86400
	h, m, x := s/3600, s/60%60, s%60
	return append(b, 'T', byte('0'+h/10), byte('0'+h%10), ':', byte('0'+m/10), byte('0'+m%10), ':', byte('0'+x/10), byte('0'+x%10))
}

// appendFraction appends "." and the first digits of ns's sub-second part.
func appendFraction(b []byte, ns int64, digits int) []byte {
	frac := ns % 1e9
	b = append(b, '.')
	div := int64(1e8)
	for range digits {
		b = append(b, byte('0'+frac/div%10))
		div /= 10
	}
	return b
}

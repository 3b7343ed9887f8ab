package decode

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// This file is a validating, zero-allocation JSON scanner specialised for
// the decoders. One pass over a record checks its syntax and its UTF-8,
// and records where the values of the wanted fields are. A field is named
// by its dotted path, whether the producer wrote it flat
// ("url.domain": …) or nested ("url": {"domain": …}): httpd writes flat
// keys inside rsyslog's nested envelope, other ECS producers nest them, and
// both must decode alike and at the same speed (docs/domain.md section 4).
//
// Each format has a lookup function from path to field slot. Objects whose
// path is a prefix of a wanted path are descended into; every other value
// is skipped (but still validated). When a record holds a key twice, the
// last one wins, as with encoding/json v1: syslog_cee splices MediaWiki's
// JSON after rsyslog's own keys, so the later value is MediaWiki's. The
// decoders never read the key that is known to be duplicated ("host").
//
// The scanner stays one file past 400 lines, and object and skip stay
// long functions, on purpose: they and scanString are the loops every byte
// of a record goes through, tuned together and measured in bench_test.go.
// Helpers of their size would not be inlined and would add a call per key
// or value. Even moving whole functions out to other files, with the
// machine code of every function unchanged, changes where the linker
// places the hot code, and that alone moved the decoders' benchmarks by
// several per cent (up to 15% for some formats) when it was tried.

// jsonKind is the JSON type of a recorded value.
type jsonKind uint8

const (
	kindAbsent jsonKind = iota
	kindString
	kindNumber
	kindTrue
	kindFalse
	kindNull
	kindObject
	kindArray
)

// span is where a wanted value sits in the record. For a string it is the
// content between the quotes; for anything else, the whole value.
type span struct {
	start, end int32 // records are at most MaxRecordBytes ≤ 1 GiB
	kind       jsonKind
	escaped    bool // a string holding backslash escapes
}

const (
	// maxFields is the number of field slots a format may use.
	maxFields = 24
	// maxDepth bounds nesting so that hostile input cannot exhaust the
	// stack. No real record comes close; deeper input is rejected as
	// invalid JSON.
	maxDepth = 64

	// maxPathLen bounds the dotted paths that are looked up.
	maxPathLen = 128

	slotNone   = -1 // a path nobody wants
	slotObject = -2 // a path some wanted path runs through: descend
)

// lookup maps a dotted path to a field slot of the decoder's format, or to
// slotNone / slotObject. It is a switch, not a map or a func value, so that
// it costs no allocation and no indirect call.
func (d *Decoder) lookup(p []byte) int {
	switch d.format {
	case FormatAccessLog:
		return accessLogSlot(p)
	case FormatMediaWikiLog:
		return mediaWikiSlot(p)
	case FormatAPIRequest:
		return apiRequestSlot(p)
	case FormatClientError:
		return clientErrorSlot(p)
	case FormatWebrequest:
		return webrequestSlot(p)
	}
	return slotNone
}

// scan validates data as one JSON object and fills d.fields.
func (d *Decoder) scan(data []byte) error {
	d.data = data
	d.clean = plainASCII(data)
	clear(d.fields[:d.nslots])
	d.path = d.path[:0]
	i := skipWS(data, 0)
	if i >= len(data) {
		return ErrInvalidJSON
	}
	if data[i] != '{' {
		// Valid JSON that is not an object is a record of the wrong type.
		j, err := d.skip(i, 0)
		if err != nil {
			return err
		}
		if skipWS(data, j) != len(data) {
			return ErrInvalidJSON
		}
		return ErrWrongType
	}
	j, err := d.object(i+1, 0)
	if err != nil {
		return err
	}
	if skipWS(data, j) != len(data) {
		return ErrInvalidJSON
	}
	return nil
}

// object scans the members of an object whose '{' is just before i. The
// object's own path is d.path (empty at the top).
func (d *Decoder) object(i, depth int) (int, error) {
	data := d.data
	i = skipWS(data, i)
	if i < len(data) && data[i] == '}' {
		return i + 1, nil
	}
	base := len(d.path)
	for {
		if i >= len(data) || data[i] != '"' {
			return 0, ErrInvalidJSON
		}
		ks := i + 1
		ke, esc, err := d.scanStr(ks)
		if err != nil {
			return 0, err
		}
		i = skipWS(data, ke+1)
		if i >= len(data) || data[i] != ':' {
			return 0, ErrInvalidJSON
		}
		i = skipWS(data, i+1)
		if i >= len(data) {
			return 0, ErrInvalidJSON
		}
		// At the top, a plain key is its own path: no copy. No wanted path
		// is long, so a long one is not built (nor is d.path grown for it).
		var p []byte
		slot := slotNone
		switch {
		case base == 0 && !esc:
			p = data[ks:ke]
			slot = d.lookup(p)
		case base+1+ke-ks <= maxPathLen:
			d.path = d.path[:base]
			if base > 0 {
				d.path = append(d.path, '.')
			}
			if esc {
				d.path = appendUnescaped(d.path, data[ks:ke])
			} else {
				d.path = append(d.path, data[ks:ke]...)
			}
			p = d.path
			slot = d.lookup(p)
		}
		switch {
		case slot == slotObject && data[i] == '{':
			if depth+1 >= maxDepth {
				return 0, ErrInvalidJSON
			}
			if base == 0 && !esc {
				d.path = append(d.path[:0], p...)
			}
			i, err = d.object(i+1, depth+1)
		case slot >= 0:
			i, err = d.value(i, depth, &d.fields[slot])
		default:
			i, err = d.skip(i, depth)
		}
		if err != nil {
			return 0, err
		}
		d.path = d.path[:base]
		i = skipWS(data, i)
		if i >= len(data) {
			return 0, ErrInvalidJSON
		}
		switch data[i] {
		case ',':
			i = skipWS(data, i+1)
		case '}':
			return i + 1, nil
		default:
			return 0, ErrInvalidJSON
		}
	}
}

// value scans one value at i and records it in f.
func (d *Decoder) value(i, depth int, f *span) (int, error) {
	data := d.data
	if data[i] == '"' {
		e, esc, err := d.scanStr(i + 1)
		if err != nil {
			return 0, err
		}
		*f = span{start: int32(i + 1), end: int32(e), kind: kindString, escaped: esc}
		return e + 1, nil
	}
	j, err := d.skip(i, depth)
	if err != nil {
		return 0, err
	}
	var k jsonKind
	switch data[i] {
	case '{':
		k = kindObject
	case '[':
		k = kindArray
	case 't':
		k = kindTrue
	case 'f':
		k = kindFalse
	case 'n':
		k = kindNull
	default:
		k = kindNumber
	}
	*f = span{start: int32(i), end: int32(j), kind: k}
	return j, nil
}

// skip validates the value at i and returns the index just past it.
func (d *Decoder) skip(i, depth int) (int, error) {
	data := d.data
	if i >= len(data) {
		return 0, ErrInvalidJSON
	}
	switch c := data[i]; {
	case c == '"':
		e, _, err := d.scanStr(i + 1)
		if err != nil {
			return 0, err
		}
		return e + 1, nil
	case c == '{':
		if depth+1 >= maxDepth {
			return 0, ErrInvalidJSON
		}
		i = skipWS(data, i+1)
		if i < len(data) && data[i] == '}' {
			return i + 1, nil
		}
		for {
			if i >= len(data) || data[i] != '"' {
				return 0, ErrInvalidJSON
			}
			e, _, err := d.scanStr(i + 1)
			if err != nil {
				return 0, err
			}
			i = skipWS(data, e+1)
			if i >= len(data) || data[i] != ':' {
				return 0, ErrInvalidJSON
			}
			if i, err = d.skip(skipWS(data, i+1), depth+1); err != nil {
				return 0, err
			}
			i = skipWS(data, i)
			if i >= len(data) {
				return 0, ErrInvalidJSON
			}
			if data[i] == '}' {
				return i + 1, nil
			}
			if data[i] != ',' {
				return 0, ErrInvalidJSON
			}
			i = skipWS(data, i+1)
		}
	case c == '[':
		if depth+1 >= maxDepth {
			return 0, ErrInvalidJSON
		}
		i = skipWS(data, i+1)
		if i < len(data) && data[i] == ']' {
			return i + 1, nil
		}
		for {
			var err error
			if i, err = d.skip(i, depth+1); err != nil {
				return 0, err
			}
			i = skipWS(data, i)
			if i >= len(data) {
				return 0, ErrInvalidJSON
			}
			if data[i] == ']' {
				return i + 1, nil
			}
			if data[i] != ',' {
				return 0, ErrInvalidJSON
			}
			i = skipWS(data, i+1)
		}
	case c == 't':
		return literal(data, i, "true")
	case c == 'f':
		return literal(data, i, "false")
	case c == 'n':
		return literal(data, i, "null")
	case c == '-' || ('0' <= c && c <= '9'):
		return scanNumber(data, i)
	}
	return 0, ErrInvalidJSON
}

func literal(data []byte, i int, lit string) (int, error) {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return 0, ErrInvalidJSON
	}
	return i + len(lit), nil
}

func skipWS(data []byte, i int) int {
	if i < len(data) && data[i] > ' ' {
		return i // the common case: no whitespace
	}
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanNumber checks the JSON number grammar from i and returns its end.
func scanNumber(data []byte, i int) (int, error) {
	n := len(data)
	if data[i] == '-' {
		i++
	}
	switch {
	case i >= n:
		return 0, ErrInvalidJSON
	case data[i] == '0':
		i++
	case '1' <= data[i] && data[i] <= '9':
		for i < n && '0' <= data[i] && data[i] <= '9' {
			i++
		}
	default:
		return 0, ErrInvalidJSON
	}
	if i < n && data[i] == '.' {
		i++
		s := i
		for i < n && '0' <= data[i] && data[i] <= '9' {
			i++
		}
		if i == s {
			return 0, ErrInvalidJSON
		}
	}
	if i < n && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < n && (data[i] == '+' || data[i] == '-') {
			i++
		}
		s := i
		for i < n && '0' <= data[i] && data[i] <= '9' {
			i++
		}
		if i == s {
			return 0, ErrInvalidJSON
		}
	}
	return i, nil
}

// scanStr is scanString, with a shortcut for plain records: when the
// whole record is printable ASCII without a backslash (most access-log
// records), no string can hold an escape, a control character or bad
// UTF-8, so a string ends at the next quote, which bytes.IndexByte finds
// with vector instructions.
func (d *Decoder) scanStr(i int) (end int, escaped bool, err error) {
	if d.clean {
		// Most keys and values are short: look at the first 16 bytes
		// here, a word at a time, before paying for a call.
		data := d.data
		if i+16 <= len(data) {
			w := data[i : i+16 : i+16]
			if m := hasQuote(binary.LittleEndian.Uint64(w[0:8])); m != 0 {
				return i + bits.TrailingZeros64(m)>>3, false, nil
			}
			if m := hasQuote(binary.LittleEndian.Uint64(w[8:16])); m != 0 {
				return i + 8 + bits.TrailingZeros64(m)>>3, false, nil
			}
			i += 16
		}
		j := bytes.IndexByte(data[i:], '"')
		if j < 0 {
			return 0, false, ErrInvalidJSON
		}
		return i + j, false, nil
	}
	return scanString(d.data, i)
}

// hasQuote sets the high bit of each byte of x that is a quote; in a
// plain-ASCII word (below 0x80) there are no false positives, so the
// lowest set bit is the first quote.
func hasQuote(x uint64) uint64 {
	q := x ^ (swarOnes * '"')
	return (q - swarOnes) &^ q & swarHigh
}

// plainASCII says whether b holds only printable ASCII and no backslash.
// Records with whitespace other than spaces between tokens take the
// general path. x-0x20 sets a byte's high bit if it was below 0x20 (or
// from 0xA0, and borrows may flag bytes above either): enough for a yes or
// no, four words at a time.
func plainASCII(b []byte) bool {
	const c = swarOnes * 0x20
	p := b
	for len(p) >= 32 {
		x0, x1 := binary.LittleEndian.Uint64(p[0:8]), binary.LittleEndian.Uint64(p[8:16])
		x2, x3 := binary.LittleEndian.Uint64(p[16:24]), binary.LittleEndian.Uint64(p[24:32])
		if ((x0-c)|x0|(x1-c)|x1|(x2-c)|x2|(x3-c)|x3)&swarHigh != 0 {
			return false
		}
		p = p[32:]
	}
	for _, ch := range p {
		if ch < 0x20 || ch >= 0x80 {
			return false
		}
	}
	return bytes.IndexByte(b, '\\') < 0
}

const (
	swarOnes = 0x0101010101010101
	swarHigh = 0x8080808080808080
)

// swarSpecial sets the high bit of each byte of x that may be a quote, a
// backslash, a control character or non-ASCII: the bytes a string scan
// must look at. It reports no false negatives, and the lowest flagged byte
// is always a true one; above it, borrows may flag innocent bytes.
func swarSpecial(x uint64) uint64 {
	// A byte below 0x80 has its high bit set in v-0x01 (v = x^'"' or
	// x^'\\') only if v was 0, and in x-0x20 only if it was below 0x20
	// (borrows aside, which only run upwards); bytes from 0x80 are special
	// anyway, so one &^x serves all three tests.
	q := x ^ (swarOnes * '"')
	b := x ^ (swarOnes * '\\')
	return ((q-swarOnes)|(b-swarOnes)|(x-swarOnes*0x20))&^x | x
}

// scanString scans a string whose opening quote is just before i. It
// returns the index of the closing quote and whether the string holds
// escapes. It checks escapes, rejects raw control characters, and checks
// UTF-8, so no separate utf8.Valid pass over the record is needed: outside
// strings any byte ≥ 0x80 is a syntax error anyway.
func scanString(data []byte, i int) (end int, escaped bool, err error) {
	n := len(data)
	for {
		// Eight bytes at a time while none of them needs a look; then
		// straight to the first one that does (the lowest flagged byte is
		// never a false positive: borrows only run upwards).
		for i+16 <= n {
			w := data[i : i+16 : i+16] // one bounds check for both words
			m0 := swarSpecial(binary.LittleEndian.Uint64(w[0:8])) & swarHigh
			m1 := swarSpecial(binary.LittleEndian.Uint64(w[8:16])) & swarHigh
			if m0|m1 != 0 {
				if m0 != 0 {
					i += bits.TrailingZeros64(m0) >> 3
				} else {
					i += 8 + bits.TrailingZeros64(m1)>>3
				}
				goto found
			}
			i += 16
		}
		for i+8 <= n {
			if m := swarSpecial(binary.LittleEndian.Uint64(data[i:])) & swarHigh; m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
	found:
		if i >= n {
			return 0, false, ErrInvalidJSON
		}
		c := data[i]
		switch {
		case c == '"':
			return i, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= n {
				return 0, false, ErrInvalidJSON
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > n || !isHex4(data[i+2:i+6]) {
					return 0, false, ErrInvalidJSON
				}
				i += 6
			default:
				return 0, false, ErrInvalidJSON
			}
		case c < 0x20:
			return 0, false, ErrInvalidJSON
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				return 0, false, ErrNonUTF8
			}
			i += size
		default:
			i++
		}
	}
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		default:
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// appendUnescaped appends the decoded content of a string that scanString
// has validated. Lone surrogates become U+FFFD, as in encoding/json.
func appendUnescaped(dst, s []byte) []byte {
	for len(s) > 0 {
		j := bytes.IndexByte(s, '\\')
		if j < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:j]...)
		s = s[j:]
		n := 2
		switch s[1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s[2:])
			n = 6
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if len(s) >= 12 && s[6] == '\\' && s[7] == 'u' {
					r2 = utf16.DecodeRune(r, hex4(s[8:]))
				}
				if r2 != utf8.RuneError {
					n = 12
				}
				r = r2
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, s[1])
		}
		s = s[n:]
	}
	return dst
}

// str returns the string in slot, unescaped if need be (into d.scratch, so
// it stays valid until the next Decode). ok is false when the field is
// absent or null; a value of another type is ErrWrongType.
func (d *Decoder) str(slot int) (b []byte, ok bool, err error) {
	f := &d.fields[slot]
	switch f.kind {
	case kindAbsent, kindNull:
		return nil, false, nil
	case kindString:
	default:
		return nil, false, ErrWrongType
	}
	raw := d.data[f.start:f.end:f.end]
	if !f.escaped {
		return raw, true, nil
	}
	start := len(d.scratch)
	d.scratch = appendUnescaped(d.scratch, raw)
	return d.scratch[start:len(d.scratch):len(d.scratch)], true, nil
}

// nonEmpty is str with an empty string counted as absent.
func (d *Decoder) nonEmpty(slot int) ([]byte, error) {
	b, _, err := d.str(slot)
	return b, err
}

// number returns the number in slot, taking a JSON number or a string
// holding one: producers differ (httpd's generated JSON LogFormat quotes
// every value, docs/domain.md section 4 shows numbers, webrequest quotes http_status).
// ok is false when absent or null; anything else is ErrWrongType.
func (d *Decoder) number(slot int) (v float64, ok bool, err error) {
	f := &d.fields[slot]
	var b []byte
	switch f.kind {
	case kindAbsent, kindNull:
		return 0, false, nil
	case kindNumber:
		b = d.data[f.start:f.end]
	case kindString:
		if f.escaped {
			return 0, false, ErrWrongType
		}
		b = d.data[f.start:f.end]
		if len(b) == 0 {
			return 0, false, ErrWrongType
		}
		if e, err := scanNumber(b, 0); err != nil || e != len(b) {
			return 0, false, ErrWrongType
		}
	default:
		return 0, false, ErrWrongType
	}
	if u, ok := parseDigits(b); ok {
		return float64(u), true, nil
	}
	x, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(b), len(b)), 64)
	if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
		return 0, false, ErrWrongType
	}
	return x, true, nil
}

// parseDigits parses a short run of ASCII digits: the common case of
// number, without strconv.
func parseDigits(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	return u, true
}

// Every format's slots fit in the fields array (a negative constant does
// not compile as a uint).
const (
	_ = uint(maxFields - alNumSlots)
	_ = uint(maxFields - mwNumSlots)
	_ = uint(maxFields - arNumSlots)
	_ = uint(maxFields - ceNumSlots)
	_ = uint(maxFields - wrNumSlots)
)

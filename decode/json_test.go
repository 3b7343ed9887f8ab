package decode

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// scanOnly runs the scanner of a decoder for format f over data.
func scanOnly(t testing.TB, f Format, data []byte) (*Decoder, error) {
	t.Helper()
	e := newEnv(t, f, Options{})
	return e.d, e.d.scan(data)
}

// The scanner accepts what encoding/json accepts (for objects of valid
// UTF-8 within the depth limit) and rejects what it rejects.
func TestScanAgreesWithEncodingJSON(t *testing.T) {
	inputs := []string{
		`{}`, ` { } `, `{"a":1}`, `{"a":-0.5e+10,"b":[1,2,{"c":null}],"d":true,"e":false}`,
		`{"a":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}`, `{"a":{"b":{"c":{}}}}`, `{"":""}`, `{"a":[]}`, `{"a":[[],[[]]]}`,
		`{"a":1,}`, `{"a":1 "b":2}`, `{"a":[1,]}`, `{"a":01}`, `{"a":.5}`, `{"a":+1}`, `{"a":1.5e}`, `{"a":"\x"}`,
		`{"a":"\u00G0"}`, `{"a":nul}`, `{"a":truee}`, `{"a":1}}`, `{"a":{"b":1}`, `{a:1}`, `{"a"}`, `{"a":}`, `{,}`,
		"{\"a\":\"\t\"}", "{\"a\":1}\n", "\t{\"a\":1}\r\n", `{"a":1} {}`, `{"a":"é€😀"}`, `{"a":-}`, `{"a":-01}`, `{"a":1E5}`,
		`{"a":0e-0}`, `{"a":[true,false,null,"x",{"y":[1]}]}`, `{"a":"` + strings.Repeat("x", 100) + `\"` + strings.Repeat("y", 30) + `"}`,
	}
	for _, in := range inputs {
		t.Run(in, func(t *testing.T) {
			_, err := scanOnly(t, FormatAccessLog, []byte(in))
			if json.Valid([]byte(in)) {
				require.NoError(t, err)
			} else {
				require.Equal(t, ErrInvalidJSON, err)
			}
		})
	}
}

func TestAppendUnescaped(t *testing.T) {
	cases := []string{
		`plain`, `a\"b`, `\\\/`, `\b\f\n\r\t`, `\u0041\u00e9\u20ac`, `\ud83d\ude00`, `\ud83d`, `\ude00x`,
		`\ud83d\u0041`, `x\ud83d\ud83d\ude00y`, `Wikimedia\\Rdbms\\DBQueryError`, `\u0000`, `é\u00e9é`,
	}
	for _, s := range cases {
		t.Run(s, func(t *testing.T) {
			var want string
			require.NoError(t, json.Unmarshal([]byte(`"`+s+`"`), &want))
			end, esc, err := scanString([]byte(s+`"`), 0)
			require.NoError(t, err)
			require.Equal(t, len(s), end)
			require.Equal(t, strings.Contains(s, `\`), esc)
			require.Equal(t, want, string(appendUnescaped(nil, []byte(s))))
		})
	}
}

// swarSpecial must flag every byte that scanString has to look at.
func TestSWARSpecialHasNoFalseNegatives(t *testing.T) {
	for pos := range 8 {
		for b := range 256 {
			var buf [8]byte
			for i := range buf {
				buf[i] = 'a'
			}
			buf[pos] = byte(b)
			special := b == '"' || b == '\\' || b < 0x20 || b >= 0x80
			got := swarSpecial(binary.LittleEndian.Uint64(buf[:]))&swarHigh != 0
			if special {
				require.True(t, got, "byte %#x at %d", b, pos)
			} else {
				require.False(t, got, "byte %#x at %d: a false positive costs speed only, but plain ASCII must pass", b, pos)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		x := rng.Uint64()
		if swarSpecial(x)&swarHigh == 0 {
			var buf [8]byte
			binary.LittleEndian.PutUint64(buf[:], x)
			for _, c := range buf {
				require.False(t, c == '"' || c == '\\' || c < 0x20 || c >= 0x80, "%#x", x)
			}
		}
	}
}

// Flat dotted keys, nested objects and a mix of both reach the same slots.
func TestScanPaths(t *testing.T) {
	cases := map[string]string{
		"flat":         `{"url.domain":"test.wikipedia.org","http.response.status_code":"200","labels.deployment":"mw-pretrain"}`,
		"nested":       `{"url":{"domain":"test.wikipedia.org"},"http":{"response":{"status_code":"200"}},"labels":{"deployment":"mw-pretrain"}}`,
		"mixed":        `{"url":{"path":"/"},"http.response":{"status_code":"200"},"http":{"request":{"method":"GET"}},"labels":{"deployment":"mw-pretrain"},"url.domain":"test.wikipedia.org"}`,
		"escaped keys": `{"url\u002edomain":"test.wikipedia.org","http":{"resp\u006fnse":{"status_code":"200"}},"labels":{"deployment":"mw-pretrain"}}`,
	}
	for name, rec := range cases {
		t.Run(name, func(t *testing.T) {
			d, err := scanOnly(t, FormatAccessLog, []byte(rec))
			require.NoError(t, err)
			get := func(slot int) string {
				b, ok, err := d.str(slot)
				require.NoError(t, err)
				require.True(t, ok)
				return string(b)
			}
			require.Equal(t, "test.wikipedia.org", get(alDomain))
			require.Equal(t, "200", get(alStatus))
			require.Equal(t, "mw-pretrain", get(alDeployment))
		})
	}
}

// Values at unwanted paths are skipped whatever their type; a wanted path
// holding an object or array records it, for the decoder to reject.
func TestScanKinds(t *testing.T) {
	d, err := scanOnly(t, FormatMediaWikiLog, []byte(`{"host":{"name":"x"},"url":"/wiki/X","wiki":["enwiki"],"exception":{"class":{"x":1},"file":null,"trace":"t"},"monolog_level":400}`))
	require.NoError(t, err)
	require.Equal(t, kindArray, d.fields[mwWiki].kind)
	require.Equal(t, kindObject, d.fields[mwClass].kind)
	require.Equal(t, kindNull, d.fields[mwFile].kind)
	require.Equal(t, kindString, d.fields[mwTrace].kind)
	require.Equal(t, kindNumber, d.fields[mwMonologLevel].kind)
	require.Equal(t, kindAbsent, d.fields[mwURLFull].kind, `legacy "url" is a string: not descended`)
	_, _, err = d.str(mwWiki)
	require.Equal(t, ErrWrongType, err)
}

func TestNumber(t *testing.T) {
	cases := []struct {
		json string
		want float64
		ok   bool
		err  error
	}{
		{`1`, 1, true, nil}, {`"35012"`, 35012, true, nil}, {`-5`, -5, true, nil}, {`1.5e3`, 1500, true, nil},
		{`"1.5"`, 1.5, true, nil}, {`123456789012345678901234`, 123456789012345678901234, true, nil},
		{`null`, 0, false, nil}, {`"x"`, 0, false, ErrWrongType}, {`""`, 0, false, ErrWrongType}, {`" 1"`, 0, false, ErrWrongType},
		{`"1 "`, 0, false, ErrWrongType}, {`true`, 0, false, ErrWrongType}, {`[1]`, 0, false, ErrWrongType},
		{`"\u0031"`, 0, false, ErrWrongType}, {`1e999`, 0, false, ErrWrongType},
	}
	for _, tc := range cases {
		t.Run(tc.json, func(t *testing.T) {
			d, err := scanOnly(t, FormatAccessLog, []byte(`{"event.duration":`+tc.json+`}`))
			require.NoError(t, err)
			v, ok, err := d.number(alDuration)
			require.Equal(t, tc.err, err)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.want, v)
		})
	}
}

// Unescaped strings stay valid after later ones grow the scratch buffer.
func TestStrScratchGrowth(t *testing.T) {
	long := strings.Repeat(`\u00e9`, 2000)
	d, err := scanOnly(t, FormatMediaWikiLog, []byte(`{"message":"a\nb","normalized_message":"`+long+`","wiki":"x\ty"}`))
	require.NoError(t, err)
	m, _, err := d.str(mwMessage)
	require.NoError(t, err)
	n, _, err := d.str(mwNormalized)
	require.NoError(t, err)
	w, _, err := d.str(mwWiki)
	require.NoError(t, err)
	require.Equal(t, "a\nb", string(m))
	require.Equal(t, strings.Repeat("é", 2000), string(n))
	require.True(t, utf8.Valid(n))
	require.Equal(t, "x\ty", string(w))
}

// The lowest byte swarSpecial flags is the first special byte.
func TestSWARSpecialLowestIsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	alphabet := []byte{'a', 'Z', ' ', '"', '\\', 0x00, 0x1f, 0x20, 0x7f, 0x80, 0x9f, 0xa0, 0xff, '!', '#', '[', ']'}
	for range 200000 {
		var buf [8]byte
		for i := range buf {
			buf[i] = alphabet[rng.IntN(len(alphabet))]
		}
		first := -1
		for i, c := range buf {
			if c == '"' || c == '\\' || c < 0x20 || c >= 0x80 {
				first = i
				break
			}
		}
		m := swarSpecial(binary.LittleEndian.Uint64(buf[:])) & swarHigh
		if first < 0 {
			require.Zero(t, m, "%q", buf)
			continue
		}
		require.Equal(t, first, bits.TrailingZeros64(m)>>3, "%q", buf)
	}
}

// Long keys are skipped without growing the path buffer.
func TestScanLongKeys(t *testing.T) {
	long := strings.Repeat("k", 10000)
	d, err := scanOnly(t, FormatAccessLog, []byte(`{"url":{"`+long+`":{"domain":"x"},"domain":"test.wikipedia.org"},"`+long+`":1}`))
	require.NoError(t, err)
	b, _, err := d.str(alDomain)
	require.NoError(t, err)
	require.Equal(t, "test.wikipedia.org", string(b))
	require.LessOrEqual(t, cap(d.path), 2*maxPathLen)
}

func TestPlainASCII(t *testing.T) {
	require.True(t, plainASCII(nil))
	base := []byte(strings.Repeat(`{"a": "b c~"}`, 7))
	require.True(t, plainASCII(base))
	for i := range base {
		for _, c := range []byte{0x00, 0x09, 0x0a, 0x1f, '\\', 0x7f + 1, 0xa0, 0xff} {
			b := bytes.Clone(base)
			b[i] = c
			require.False(t, plainASCII(b), "byte %#x at %d", c, i)
		}
		b := bytes.Clone(base)
		b[i] = 0x7f // DEL is printable enough for JSON: no escape needed
		require.True(t, plainASCII(b))
	}
}

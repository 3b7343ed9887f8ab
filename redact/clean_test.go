package redact

import (
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestClean(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		limit int
		keep  bool
		want  string
	}{
		{name: "plain", in: "hello", limit: 10, want: "hello"},
		{name: "empty", in: "", limit: 10, want: ""},
		{name: "trimmed", in: "  hi \n", limit: 10, want: "hi"},
		{name: "newlines to spaces", in: "a\nb\tc\rd", limit: 10, want: "a b c d"},
		{name: "newlines kept", in: "a\nb\tc", limit: 10, keep: true, want: "a\nb c"},
		{name: "controls dropped", in: "a\x00\x1b\x7f\u0085b", limit: 10, want: "ab"},
		{name: "bidi dropped", in: "a\u202Eb\u2067c\u200Fd", limit: 10, want: "abcd"},
		{name: "invalid UTF-8 replaced", in: "a\xffb", limit: 10, want: "a\uFFFDb"},
		{name: "cut with ellipsis", in: "abcdefghijk", limit: 10, want: "abcdefg…"},
		{name: "exact fit not cut", in: "abcdefghij", limit: 10, want: "abcdefghij"},
		{name: "cut on a rune boundary", in: "ééééé", limit: 8, want: "éé…"},
		{name: "4-byte runes", in: "𝄞𝄞𝄞", limit: 9, want: "𝄞…"},
		{name: "limit below ellipsis", in: "abcdef", limit: 2, want: ""},
		{name: "markup untouched", in: "<b>&amp;</b>", limit: 20, want: "<b>&amp;</b>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Clean(tc.in, tc.limit, tc.keep)
			require.Equal(t, tc.want, got)
			require.LessOrEqual(t, len(got), tc.limit)
			require.True(t, utf8.ValidString(got))
		})
	}
}

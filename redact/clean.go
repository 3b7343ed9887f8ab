package redact

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Ellipsis marks where Clean cut a text.
const Ellipsis = "…"

// Clean makes text taken from events safe to hand to a person (Alertmanager and its
// receivers, the console, the API): invalid UTF-8 becomes U+FFFD, control and bidirectional-override
// characters go (line breaks become spaces unless keepNewlines), surrounding
// space is trimmed, and the result is at most limit bytes, ending in an
// Ellipsis when cut. It does not HTML-escape: values are text, and escaping
// is the renderer's job (Alertmanager templates escape by default).
func Clean(s string, limit int, keepNewlines bool) string {
	if s == "" {
		return ""
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' && keepNewlines:
			return r
		case r == '\n' || r == '\r' || r == '\t' || r == '\u2028' || r == '\u2029':
			return ' '
		case unicode.IsControl(r), IsBidiControl(r):
			return -1
		default:
			return r
		}
	}, s)
	return truncate(strings.TrimSpace(s), limit)
}

// IsBidiControl reports the explicit directional formatting characters,
// which can make a message read differently from what it says.
func IsBidiControl(r rune) bool {
	return (r >= '\u202A' && r <= '\u202E') || (r >= '\u2066' && r <= '\u2069') || r == '\u200E' || r == '\u200F' || r == '\u061C'
}

// truncate cuts s to at most limit bytes on a rune boundary, marking the cut.
func truncate(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	if limit < len(Ellipsis) {
		return ""
	}
	cut := limit - len(Ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + Ellipsis
}

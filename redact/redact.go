// Package redact removes personal data from text taken from log messages
// before it leaves the process: the findings API, Alertmanager annotations
// (which go on to IRC and Phabricator), the console, the findings JSONL and
// the replay report. MediaWiki's error messages begin with the request's URL
// ("[reqId] /w/index.php?title=…&target=…   Exception: …"), and logs carry
// IP addresses and user names; Wikimedia keeps these logs NDA-restricted,
// and the places findings go to are not.
//
// What goes, and what it becomes:
//   - a URL's query string (what follows "?" inside a URL or path): "?…"
//   - IPv4 and IPv6 addresses (a port stays): "[ip]"
//   - user names in wiki paths, after User:, User_talk:, User talk:, and the
//     Special pages that take a user (Contributions, DeletedContributions,
//     EmailUser, Block, Unblock, CentralAuth, Log, ListFiles), plain or
//     percent-encoded: "User:[user]"
//   - quoted user names in messages (user "Foo", username 'Foo',
//     User::newFromName("Foo")): user "[user]"
//   - e-mail addresses: "[email]"
//
// Redaction is on by default everywhere findings leave the process; no key
// turns it off. The fingerprint, the normalized message and the counts are
// computed before it and are not affected.
package redact

import (
	"net"
	"regexp"
	"strings"

	"github.com/wikimedia/pretrain-detector/detect"
)

// Placeholders left where something was removed.
const (
	Query = "?…"
	IP    = "[ip]"
	User  = "[user]"
	Email = "[email]"
)

var (
	// A query string: "?" right after a URL or path character, up to the
	// next space or quote. A "?" after a space (a question) stays.
	queryRe = regexp.MustCompile(`([^\s?])\?[^\s"'<>\x60]+`)
	// User pages and the Special pages that name a user, up to the next
	// space, slash-free: the subpage goes with the name it belongs to.
	userPathRe = regexp.MustCompile(`(?i)((?:^|[/\s"'=])(?:(?:User|User_talk|User%20talk|User talk)(?::|%3A)|Special(?::|%3A)(?:Contributions|DeletedContributions|EmailUser|Block|Unblock|CentralAuth|Log|ListFiles)/))[^\s"'?#<>:][^\s"'?#<>]*`)
	// user "Name", username 'Name', User::newFromName( "Name" ).
	userQuotedRe = regexp.MustCompile(`(?i)(\b(?:user(?:name)?|newFromName\()\s*[:=]?\s*)(["'])[^"']{1,255}(["'])`)
	emailRe      = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`)
	ipv4Re       = regexp.MustCompile(`\b(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}\b`)
	// IPv6 candidates; net.ParseIP decides (so "04:23:54" stays).
	ipv6Re = regexp.MustCompile(`[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.[0-9]{1,3}){0,3}`)
)

// Text returns s without query strings, IP addresses, user names and e-mail
// addresses.
func Text(s string) string {
	if s == "" {
		return s
	}
	// Queries first: they hold most of the rest, which then need no
	// separate pass.
	if strings.IndexByte(s, '?') >= 0 {
		s = queryRe.ReplaceAllString(s, "${1}"+Query)
	}
	if strings.IndexByte(s, '@') >= 0 {
		s = emailRe.ReplaceAllString(s, Email)
	}
	s = userPathRe.ReplaceAllStringFunc(s, func(m string) string {
		sub := userPathRe.FindStringSubmatch(m)
		return sub[1] + User
	})
	s = userQuotedRe.ReplaceAllString(s, "${1}${2}"+User+"${3}")
	if strings.IndexByte(s, ':') >= 0 {
		s = replaceIPv6(s)
	}
	if strings.IndexByte(s, '.') >= 0 {
		s = ipv4Re.ReplaceAllString(s, IP)
	}
	return s
}

// replaceIPv6 replaces the IPv6 addresses in s. A candidate counts when it
// stands alone (no letter, digit, "_" or "\\" on either side, so PHP's
// "Database::query" is safe even though "e::" parses), has at least three
// groups (so times like "04:23:54" and "::1" stay) and parses.
func replaceIPv6(s string) string {
	var b strings.Builder
	last := 0
	for _, m := range ipv6Re.FindAllStringIndex(s, -1) {
		cand := s[m[0]:m[1]]
		if (m[0] > 0 && wordByte(s[m[0]-1])) || (m[1] < len(s) && wordByte(s[m[1]])) {
			continue
		}
		groups := 0
		for _, g := range strings.Split(cand, ":") {
			if g != "" {
				groups++
			}
		}
		if groups < 3 || net.ParseIP(cand) == nil {
			continue
		}
		b.WriteString(s[last:m[0]])
		b.WriteString(IP)
		last = m[1]
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func wordByte(c byte) bool {
	return c == '_' || c == '\\' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// Finding returns f with the text taken from log messages redacted: the
// exemplar, the summary, the message and the note. Counts, identity
// (ID, fingerprint) and times are untouched.
func Finding(f detect.Finding) detect.Finding {
	f.Evidence.Exemplar = Text(f.Evidence.Exemplar)
	f.Summary = Text(f.Summary)
	f.NormalizedMessage = Text(f.NormalizedMessage)
	f.Evidence.Note = Text(f.Evidence.Note)
	return f
}

// Findings redacts a slice in place and returns it.
func Findings(fs []detect.Finding) []detect.Finding {
	for i := range fs {
		fs[i] = Finding(fs[i])
	}
	return fs
}

package decode

import (
	"bytes"
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// exceptionPrefix is what MediaWiki puts before every exception's
// normalized message; scap's logstash_checker strips it before grouping.
const exceptionPrefix = "[{reqId}] {exception_url}   "

// mwPathPrefix starts the path of a deployed MediaWiki file; the version
// directory follows ("/srv/mediawiki/php-1.47.0-wmf.16/includes/…").
const mwPathPrefix = "/srv/mediawiki/php-"

// Fingerprint identifies an error signature: an xxhash over the normalized
// message without the "[{reqId}] {exception_url}   " prefix, the exception
// class, and the origin file without its ":<line>" suffix (the key of
// docs/domain.md section 3). Each part is length-prefixed, so ("ab", "c") and
// ("a", "bc") differ.
//
// The version directory in "/srv/mediawiki/php-<version>/" is hashed as
// "php-*" in the message and the file: the same bug in next week's branch
// is the same signature, otherwise every error would look new after every
// train deploy. It does not allocate.
func Fingerprint(normalizedMessage, class, file []byte) uint64 {
	msg, _ := bytes.CutPrefix(normalizedMessage, []byte(exceptionPrefix))
	var h xxhash.Digest
	h.Reset()
	writeVersionless(&h, msg)
	writePart(&h, class)
	writeVersionless(&h, stripLine(file))
	return h.Sum64()
}

func writePart(h *xxhash.Digest, b []byte) {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
	_, _ = h.Write(n[:])
	_, _ = h.Write(b)
}

// writeVersionless writes b with the version of every deployed-MediaWiki
// path replaced by "*", length-prefixed by its rewritten length.
func writeVersionless(h *xxhash.Digest, b []byte) {
	// Count first: the length prefix is that of the rewritten text.
	n := len(b)
	for rest := b; ; {
		_, v, after, ok := cutVersion(rest)
		if !ok {
			break
		}
		n -= len(v) - 1
		rest = after
	}
	var pre [8]byte
	binary.LittleEndian.PutUint64(pre[:], uint64(n))
	_, _ = h.Write(pre[:])
	for {
		before, _, after, ok := cutVersion(b)
		if !ok {
			_, _ = h.Write(b)
			return
		}
		_, _ = h.Write(before)
		_, _ = h.WriteString("*")
		b = after
	}
}

// cutVersion finds the first "/srv/mediawiki/php-<version>/" in b and
// splits b around <version>.
func cutVersion(b []byte) (before, version, after []byte, ok bool) {
	for from := 0; ; {
		i := bytes.Index(b[from:], []byte(mwPathPrefix))
		if i < 0 {
			return nil, nil, nil, false
		}
		s := from + i + len(mwPathPrefix)
		end := bytes.IndexByte(b[s:], '/')
		if end > 0 && validVersion(b[s:s+end]) {
			return b[:s], b[s : s+end], b[s+end:], true
		}
		from = s // not a version directory: look further on
	}
}

// validVersion accepts what a branch directory can be called
// ("1.47.0-wmf.16", "next"), and nothing with spaces or quotes, which would
// mean the path ended earlier.
func validVersion(v []byte) bool {
	if len(v) == 0 || len(v) > 40 {
		return false
	}
	for _, c := range v {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// versionFromPath returns <version> from the first
// "/srv/mediawiki/php-<version>/" in b: php-wmerrors fatals log no
// mwversion field, only paths.
func versionFromPath(b []byte) []byte {
	_, v, _, ok := cutVersion(b)
	if !ok {
		return nil
	}
	return v
}

// stripLine removes a ":<digits>" suffix: exception.file is "<path>:<line>".
func stripLine(file []byte) []byte {
	i := bytes.LastIndexByte(file, ':')
	if i < 0 || i == len(file)-1 {
		return file
	}
	for _, c := range file[i+1:] {
		if c < '0' || c > '9' {
			return file
		}
	}
	return file[:i]
}

// Package wikimap knows every Wikimedia wiki: its dbname, canonical host, DB
// section, train group and flags. The default map is built into the binary
// from operations/mediawiki-config data; Load reads a checkout instead.
package wikimap

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"slices"
)

// ID is a small stable number for a wiki in one Map; 0 means unknown.
type ID uint16

// Wiki is everything the detector knows about one wiki.
type Wiki struct {
	ID           ID
	DBName       string // "enwiki"
	Host         string // canonical host: "en.wikipedia.org"
	Section      string // DB section "s1".."s8" (s3 is the default for wikis in no sN list)
	Group        string // train group "group0" | "group1" | "group2"
	Family       string // "wikipedia", "wiktionary", ..., "" for special wikis
	Size         string // "small" | "medium" | "large" ("" if in none)
	Version      string // from wikiversions.json, e.g. "php-1.47.0-wmf.16"
	WikidataRepo string // dbname of the Wikibase repo it is a client of ("wikidatawiki", "testwikidatawiki"), "" if none

	Closed, Private, Fishbowl, Special, Test, SUL, Echo, Flow bool // Test = in testwikis.dblist; SUL = in sul.dblist
}

// Map is an immutable index of wikis; it is safe for concurrent use.
type Map struct {
	wikis    []Wiki // wikis[id-1]
	byName   map[string]ID
	byHost   map[string]ID // canonical and mobile hosts, lower case
	lists    map[string][]ID
	sections map[string][]ID
	groups   map[string][]ID
}

// embedded is the operations/mediawiki-config snapshot (MWCONF 349dc094),
// in checkout layout so that Default and Load share one code path. It is a
// package variable only because go:embed requires one; nothing writes it.
//
//go:embed data
var embedded embed.FS

// Default returns the map built into the binary. It parses the embedded
// data on every call (about a millisecond): call it once and share the Map.
func Default() (*Map, error) {
	fsys, err := fs.Sub(embedded, "data")
	if err != nil {
		return nil, fmt.Errorf("open embedded wiki data: %w", err)
	}
	m, err := load(fsys)
	if err != nil {
		return nil, fmt.Errorf("load embedded wiki map: %w", err)
	}
	return m, nil
}

// Load reads the wiki map from an operations/mediawiki-config checkout at
// dir: wikiversions.json and dblists/*.dblist.
func Load(dir string) (*Map, error) {
	m, err := load(os.DirFS(dir))
	if err != nil {
		return nil, fmt.Errorf("load wiki map from %s: %w", dir, err)
	}
	return m, nil
}

// Len is the number of wikis; valid IDs are 1..Len().
func (m *Map) Len() int { return len(m.wikis) }

// Wiki returns the wiki with this ID, or nil for 0 or an out-of-range ID.
// The pointer is into the map: read it, never write it.
func (m *Map) Wiki(id ID) *Wiki {
	if id == 0 || int(id) > len(m.wikis) {
		return nil
	}
	return &m.wikis[id-1]
}

// Wikis returns a copy of all wikis ordered by ID. IDs follow dbname order,
// so they are the same for the same data.
func (m *Map) Wikis() []Wiki { return slices.Clone(m.wikis) }

// ByName returns the ID of a dbname, 0 if unknown. It does not allocate.
func (m *Map) ByName(dbname []byte) ID {
	return m.byName[string(dbname)] // no allocation: the compiler special-cases m[string(b)]
}

// ByNameString is ByName for a string.
func (m *Map) ByNameString(dbname string) ID { return m.byName[dbname] }

// maxHostLen is the longest DNS name; longer input cannot be a wiki host and
// is rejected before it is copied to the stack buffer.
const maxHostLen = 253

// ByHost returns the ID of the wiki served at host, 0 if unknown. It
// ignores ASCII case, a trailing ":port" and a trailing ".", and knows the
// mobile hosts ("en.m.wikipedia.org", "m.wikidata.org"). It does not
// allocate: it sits on the per-event path of ingest.
func (m *Map) ByHost(host []byte) ID {
	if i := bytes.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	if len(host) == 0 || len(host) > maxHostLen {
		return 0
	}
	upper := false
	for _, c := range host {
		if 'A' <= c && c <= 'Z' {
			upper = true
			break
		}
	}
	if !upper {
		return m.byHost[string(host)]
	}
	var buf [maxHostLen]byte
	for i, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return m.byHost[string(buf[:len(host)])]
}

// InSection returns the sorted IDs of the wikis whose main DB is in section
// ("s1".."s8"), nil if none.
func (m *Map) InSection(section string) []ID { return slices.Clone(m.sections[section]) }

// InGroup returns the sorted IDs of the wikis in a train group ("group0",
// "group1", "group2"), nil if none.
func (m *Map) InGroup(group string) []ID { return slices.Clone(m.groups[group]) }

// List returns the sorted IDs of the wikis in the dblist called name (the
// file name without ".dblist", e.g. "sul", "wikidataclient-test", "s3"),
// nil if no such list was loaded. Names in the list that are not in
// wikiversions.json (deleted or not yet created wikis) are left out.
func (m *Map) List(name string) []ID {
	ids, ok := m.lists[name]
	if !ok {
		return nil
	}
	return append(make([]ID, 0, len(ids)), ids...) // non-nil even when empty: the list exists
}

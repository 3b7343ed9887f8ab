package wikimap

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"path"
	"slices"
	"strings"
)

const (
	versionsFile = "wikiversions.json"
	dblistDir    = "dblists"
	dblistExt    = ".dblist"

	// defaultSection holds every wiki that is in no sN.dblist
	// (wmf-config/db-sections.php; docs/domain.md section 6).
	defaultSection = "s3"
)

// The lists whose membership fills Wiki fields. Load fails if one is
// missing: a silently empty closed.dblist would mark closed wikis open.
// Functions, not package variables, so nothing can change them.
func sectionLists() []string { return []string{"s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"} }
func groupLists() []string   { return []string{"group0", "group1", "group2"} }
func sizeLists() []string    { return []string{"small", "medium", "large"} }

// familyLists are the project dblists; a wiki is in at most one.
func familyLists() []string {
	return []string{
		"wikipedia", "wiktionary", "wikisource", "wikibooks", "wikinews",
		"wikiquote", "wikiversity", "wikivoyage", "wikimedia", "wikidata",
	}
}

// repoLists are the Wikibase client lists.
func repoLists() []string { return []string{"wikidataclient", "wikidataclient-test"} }

// repoOf is the repo the wikis of a client list read entities from: the
// wikidataclient-test wikis (testwiki, test2wiki, ...) use test.wikidata.org.
func repoOf(list string) string {
	if list == "wikidataclient-test" {
		return "testwikidatawiki"
	}
	return "wikidatawiki"
}

func flagLists() []string {
	return []string{"closed", "private", "fishbowl", "special", "testwikis", "sul", "echo", "flow"}
}

// requiredLists is every list load reads a field from.
func requiredLists() []string {
	return slices.Concat(sectionLists(), groupLists(), sizeLists(), familyLists(), repoLists(), flagLists())
}

// load builds a Map from a directory in operations/mediawiki-config layout.
func load(fsys fs.FS) (*Map, error) {
	versions, err := readVersions(fsys)
	if err != nil {
		return nil, err
	}
	lists, err := readDBLists(fsys)
	if err != nil {
		return nil, err
	}
	for _, name := range requiredLists() {
		if _, ok := lists[name]; !ok {
			return nil, fmt.Errorf("missing %s", path.Join(dblistDir, name+dblistExt))
		}
	}

	names := make([]string, 0, len(versions))
	for name := range versions {
		names = append(names, name)
	}
	slices.Sort(names) // IDs in dbname order: deterministic across runs and hosts
	if len(names) > math.MaxUint16 {
		return nil, fmt.Errorf("%s: %d wikis do not fit in an ID", versionsFile, len(names))
	}

	m := &Map{
		wikis:    make([]Wiki, len(names)),
		byName:   make(map[string]ID, len(names)),
		byHost:   make(map[string]ID, 2*len(names)),
		lists:    make(map[string][]ID, len(lists)),
		sections: make(map[string][]ID),
		groups:   make(map[string][]ID),
	}
	for i, name := range names {
		id := ID(i + 1)
		m.wikis[i] = Wiki{ID: id, DBName: name, Version: versions[name]}
		m.byName[name] = id
	}
	for name, members := range lists {
		ids := make([]ID, 0, len(members))
		for _, db := range members {
			if id := m.byName[db]; id != 0 {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		m.lists[name] = slices.Compact(ids)
	}

	if err := m.fillFields(); err != nil {
		return nil, err
	}
	if err := m.indexHosts(); err != nil {
		return nil, err
	}
	for i := range m.wikis {
		w := &m.wikis[i]
		m.sections[w.Section] = append(m.sections[w.Section], w.ID)
		if w.Group != "" {
			m.groups[w.Group] = append(m.groups[w.Group], w.ID)
		}
	}
	return m, nil
}

// fillFields sets every Wiki field that comes from dblist membership.
func (m *Map) fillFields() error {
	exclusive := []struct {
		field string
		lists []string
		set   func(w *Wiki, list string)
	}{
		{"section", sectionLists(), func(w *Wiki, l string) { w.Section = l }},
		{"train group", groupLists(), func(w *Wiki, l string) { w.Group = l }},
		{"size", sizeLists(), func(w *Wiki, l string) { w.Size = l }},
		{"family", familyLists(), func(w *Wiki, l string) { w.Family = l }},
		// A wiki reads entities from one repo, so it is a client in one list.
		{"wikibase repo", repoLists(), func(w *Wiki, l string) { w.WikidataRepo = repoOf(l) }},
	}
	for _, e := range exclusive {
		seen := make([]string, len(m.wikis))
		for _, list := range e.lists {
			for _, id := range m.lists[list] {
				w := &m.wikis[id-1]
				if prev := seen[id-1]; prev != "" {
					return fmt.Errorf("%s is in both %s and %s: it can have one %s",
						w.DBName, prev+dblistExt, list+dblistExt, e.field)
				}
				seen[id-1] = list
				e.set(w, list)
			}
		}
	}

	flags := []struct {
		list string
		set  func(w *Wiki)
	}{
		{"closed", func(w *Wiki) { w.Closed = true }},
		{"private", func(w *Wiki) { w.Private = true }},
		{"fishbowl", func(w *Wiki) { w.Fishbowl = true }},
		{"special", func(w *Wiki) { w.Special = true }},
		{"testwikis", func(w *Wiki) { w.Test = true }},
		{"sul", func(w *Wiki) { w.SUL = true }},
		{"echo", func(w *Wiki) { w.Echo = true }},
		{"flow", func(w *Wiki) { w.Flow = true }},
	}
	for _, f := range flags {
		for _, id := range m.lists[f.list] {
			f.set(&m.wikis[id-1])
		}
	}

	for i := range m.wikis {
		if m.wikis[i].Section == "" {
			m.wikis[i].Section = defaultSection
		}
	}
	return nil
}

// indexHosts sets Wiki.Host and fills byHost with canonical and mobile hosts.
func (m *Map) indexHosts() error {
	overrides := hostOverrides()
	for i := range m.wikis {
		w := &m.wikis[i]
		w.Host = canonicalHost(w.DBName, w.Family, overrides)
		if w.Host == "" {
			continue // a wiki newer than our override table: known by name, not by host
		}
		if prev, ok := m.byHost[w.Host]; ok {
			return fmt.Errorf("wikis %s and %s both have host %s", m.wikis[prev-1].DBName, w.DBName, w.Host)
		}
		m.byHost[w.Host] = w.ID
	}
	// Mobile hosts after all canonical ones, so a canonical host always wins.
	for i := range m.wikis {
		w := &m.wikis[i]
		if w.Host == "" {
			continue
		}
		if mh := mobileHost(w.Host); mh != "" {
			if _, ok := m.byHost[mh]; !ok {
				m.byHost[mh] = w.ID
			}
		}
	}
	return nil
}

// readVersions reads wikiversions.json: {"dbname": "php-<version>", ...}.
func readVersions(fsys fs.FS) (map[string]string, error) {
	b, err := fs.ReadFile(fsys, versionsFile)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", versionsFile, err)
	}
	var versions map[string]string
	if err := json.Unmarshal(b, &versions); err != nil {
		return nil, fmt.Errorf("parse %s: %w", versionsFile, err)
	}
	if len(versions) == 0 {
		return nil, fmt.Errorf("%s lists no wikis", versionsFile)
	}
	for name, v := range versions {
		if !validDBName(name) {
			return nil, fmt.Errorf("%s: invalid dbname %q", versionsFile, name)
		}
		// MWMultiVersion refuses a version that does not name a php- branch directory.
		if !strings.HasPrefix(v, "php-") {
			return nil, fmt.Errorf("%s: %s has version %q, want php-<version>", versionsFile, name, v)
		}
	}
	return versions, nil
}

// readDBLists reads every dblists/*.dblist, keyed by file name without the
// extension. The .dbexpr sources are not read: the checkout also carries the
// .dblist each one generates.
func readDBLists(fsys fs.FS) (map[string][]string, error) {
	entries, err := fs.ReadDir(fsys, dblistDir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dblistDir, err)
	}
	lists := make(map[string][]string, len(entries))
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), dblistExt)
		if !ok || e.IsDir() {
			continue
		}
		file := path.Join(dblistDir, e.Name())
		b, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		members, err := parseDBList(b)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", file, err)
		}
		lists[name] = members
	}
	return lists, nil
}

// parseDBList parses one dbname per line; '#' starts a comment.
func parseDBList(b []byte) ([]string, error) {
	var members []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if !validDBName(line) {
			return nil, fmt.Errorf("line %d: invalid dbname %q", n, line)
		}
		members = append(members, line)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return members, nil
}

// validDBName accepts what MediaWiki uses as wiki IDs: lower-case ASCII
// letters, digits and '_'.
func validDBName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

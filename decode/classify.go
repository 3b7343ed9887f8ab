package decode

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/wikimedia/pretrain-detector/event"
)

// ClassifierConfig says which channels and code paths implicate which
// shared-data path (docs/domain.md section 2). Class names are
// SharedClass.String() values ("core-db", "objectcache", …).
type ClassifierConfig struct {
	// Channels maps a MediaWiki log channel (case-sensitive, as logged) to
	// a class. The class "none" removes a channel from the map.
	Channels map[string]string `yaml:"channels"`
	// Paths are matched, in order, against the origin file and the trace
	// frames of an error; the first rule that matches the innermost
	// matching location wins.
	Paths []PathRule `yaml:"paths"`
}

// PathRule maps a substring of a trace frame or origin file to a class.
type PathRule struct {
	Contains string `yaml:"contains"`
	Class    string `yaml:"class"`
}

// DefaultClassifierConfig is the classification of docs/domain.md section 2.
// Channel names are those MediaWiki and the extensions log under; paths are
// source directories and files under /srv/mediawiki/php-<version>/.
func DefaultClassifierConfig() ClassifierConfig {
	return ClassifierConfig{
		Channels: map[string]string{
			// Core DB sections: s3 holds testwiki and ~900 other wikis.
			"rdbms": "core-db", "DBQuery": "core-db", "DBReplication": "core-db",
			"DBConnection": "core-db", "DBPerformance": "core-db", "DBTransaction": "core-db",
			// memcached / WANObjectCache through mcrouter.
			"memcached": "objectcache", "objectcache": "objectcache", "WANObjectCache": "objectcache",
			// Parser cache: mcrouter plus the SQL pc tables (SqlBagOStuff).
			"ParserCache": "parsercache", "SQLBagOStuff": "parsercache",
			"ExternalStore": "externalstore",
			// Job queue: EventBus → Kafka → changeprop → jobrunners.
			"JobExecutor": "jobqueue", "runJobs": "jobqueue", "JobQueue": "jobqueue", "EventBus": "jobqueue",
			// centralauth DB (s7): CentralAuth, GlobalBlocking, OATHAuth.
			"CentralAuth": "centralauth", "CentralAuthVerbose": "centralauth", "CentralAuthRename": "centralauth",
			"GlobalBlocking": "centralauth", "OATHAuth": "centralauth",
			"session": "session", "SessionManager": "session",
			"Wikibase": "wikibase",
			// metawiki-hosted data: OAuth consumers, CentralNotice campaigns.
			"OAuth": "metawiki", "CentralNotice": "metawiki",
			// x1: cross-wiki notifications.
			"Echo": "x1",
			// File operations go to the shared file backend; Commons is the shared repo.
			"FileOperation": "commons", "GlobalUsage": "commons",
			"poolcounter": "other", "redis": "other",
		},
		Paths: []PathRule{
			{Contains: "/libs/rdbms/", Class: "core-db"},
			{Contains: "/extensions/CentralAuth/", Class: "centralauth"},
			{Contains: "/extensions/GlobalBlocking/", Class: "centralauth"},
			{Contains: "/extensions/OATHAuth/", Class: "centralauth"},
			{Contains: "/extensions/Echo/", Class: "x1"},
			{Contains: "/extensions/LoginNotify/", Class: "x1"},
			{Contains: "/extensions/UrlShortener/", Class: "x1"},
			{Contains: "/extensions/ContentTranslation/", Class: "x1"},
			{Contains: "/extensions/ReadingLists/", Class: "x1"},
			{Contains: "/extensions/Flow/", Class: "x1"},
			{Contains: "/extensions/GrowthExperiments/", Class: "x1"},
			{Contains: "ParserCache", Class: "parsercache"},
			{Contains: "/objectcache/SqlBagOStuff", Class: "parsercache"},
			{Contains: "/libs/objectcache/", Class: "objectcache"},
			{Contains: "WANObjectCache", Class: "objectcache"},
			{Contains: "/includes/session/", Class: "session"},
			{Contains: "ExternalStore", Class: "externalstore"},
			{Contains: "/includes/jobqueue/", Class: "jobqueue"},
			{Contains: "/extensions/EventBus/", Class: "jobqueue"},
			{Contains: "/extensions/Wikibase/", Class: "wikibase"},
			{Contains: "/includes/filerepo/", Class: "commons"},
			{Contains: "/extensions/GlobalUsage/", Class: "commons"},
			{Contains: "/extensions/OAuth/", Class: "metawiki"},
			{Contains: "/extensions/CentralNotice/", Class: "metawiki"},
			{Contains: "/includes/user/BotPassword", Class: "metawiki"},
			{Contains: "/includes/poolcounter/", Class: "other"},
			{Contains: "/extensions/PoolCounter/", Class: "other"},
			{Contains: "/libs/redis/", Class: "other"},
		},
	}
}

// Extend returns c with extra applied on top: extra's channels replace or
// add to c's, and extra's path rules come first, so they take precedence.
func (c ClassifierConfig) Extend(extra ClassifierConfig) ClassifierConfig {
	out := ClassifierConfig{Channels: maps.Clone(c.Channels), Paths: slices.Concat(extra.Paths, c.Paths)}
	if out.Channels == nil {
		out.Channels = map[string]string{}
	}
	maps.Copy(out.Channels, extra.Channels)
	return out
}

// Classifier says which shared-data path an error implicates. It is
// immutable and safe for concurrent use.
type Classifier struct {
	channels map[string]event.SharedClass
	classes  []event.SharedClass // of each path rule, in order
	paths    *matcher            // finds the first path rule a location matches
}

// NewClassifier checks c and builds a Classifier from it.
func NewClassifier(c ClassifierConfig) (*Classifier, error) {
	cl := &Classifier{channels: make(map[string]event.SharedClass, len(c.Channels))}
	var patterns [][]byte
	var errs []error
	for _, ch := range slices.Sorted(maps.Keys(c.Channels)) {
		class, err := event.ParseSharedClass(c.Channels[ch])
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("classifier channel %q: %w", ch, err))
		case ch == "":
			errs = append(errs, errors.New("classifier: empty channel name"))
		case class != event.SharedNone:
			cl.channels[ch] = class
		}
	}
	for i, p := range c.Paths {
		class, err := event.ParseSharedClass(p.Class)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("classifier path rule %d (%q): %w", i, p.Contains, err))
		case p.Contains == "":
			errs = append(errs, fmt.Errorf("classifier path rule %d: empty contains", i))
		case class == event.SharedNone:
			errs = append(errs, fmt.Errorf("classifier path rule %d (%q): class none is only for channels", i, p.Contains))
		default:
			patterns = append(patterns, []byte(p.Contains))
			cl.classes = append(cl.classes, class)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	cl.paths = newMatcher(patterns)
	return cl, nil
}

// DefaultClassifier is NewClassifier(DefaultClassifierConfig()).
func DefaultClassifier() *Classifier {
	c, err := NewClassifier(DefaultClassifierConfig())
	if err != nil {
		panic(fmt.Sprintf("default classifier config is invalid: %v", err)) // a bug, caught by the tests
	}
	return c
}

// channelClass is the class the channel map gives, SharedNone if none.
func (c *Classifier) channelClass(channel []byte) event.SharedClass {
	return c.channels[string(channel)]
}

// Classify returns the shared-data class of an error and the evidence for
// it: the channel, when the channel map names one; else the origin file or
// the trace frame that a path rule matched. Locations are tried innermost
// first (the file, then the frames from #0 outwards): the deepest code that
// touches shared data is the most specific evidence. Within one location
// the first rule wins. In a frame only the file part counts ("#3
// /srv/…/WANObjectCache.php(1234): User->{closure}()" is WANObjectCache's
// code; "#4 /srv/…/User.php(45): WANObjectCache->get()" is User's), so a
// call into a library is attributed by the callee's own frame. Outer frames
// do count: an error anywhere inside a job runs within the job queue's
// frames, which is the changeprop path of docs/domain.md section 1. It does not
// allocate; frame points into the arguments.
func (c *Classifier) Classify(channel, file, trace []byte) (event.SharedClass, []byte) {
	if class := c.channelClass(channel); class != event.SharedNone {
		return class, channel
	}
	if r := c.paths.first(file); r >= 0 {
		return c.classes[r], file
	}
	for len(trace) > 0 {
		line := trace
		next := len(trace)
		if nl := bytes.IndexByte(trace, '\n'); nl >= 0 {
			line, next = trace[:nl], nl+1
		}
		if r := c.paths.first(line[:filePartEnd(line)]); r >= 0 {
			return c.classes[r], bytes.TrimRight(line, "\r")
		}
		trace = trace[next:]
	}
	return event.SharedNone, nil
}

// filePartEnd is where the file part of a trace line ends: at the
// "(<line>)" of "#0 /path/File.php(12): f()", or at the ": " of
// "#1 [internal function]: f()".
func filePartEnd(line []byte) int {
	end := len(line)
	if p := bytes.IndexByte(line, '('); p >= 0 {
		end = p
	}
	if p := bytes.Index(line[:end], []byte(": ")); p >= 0 {
		end = p
	}
	return end
}

// matcher is an Aho-Corasick automaton over the path rules, compiled to a
// DFA: one table lookup per byte finds every rule occurring in a text, so
// classifying a trace costs one pass over its file parts however many
// rules there are. Bytes that occur in no rule share one class, which
// keeps the table small.
type matcher struct {
	class  [256]uint16
	nclass int
	delta  []int32 // delta[state*nclass+class] = next state
	out    []int32 // per state: the lowest rule index ending here (or at a suffix), -1 if none
}

func newMatcher(patterns [][]byte) *matcher {
	m := &matcher{nclass: 1}
	for _, p := range patterns {
		for _, b := range p {
			if m.class[b] == 0 {
				m.class[b] = uint16(m.nclass)
				m.nclass++
			}
		}
	}
	// The trie: goto edges, -1 for none.
	newState := func() int32 {
		for range m.nclass {
			m.delta = append(m.delta, -1)
		}
		m.out = append(m.out, -1)
		return int32(len(m.out) - 1)
	}
	newState() // the root
	for i, p := range patterns {
		s := int32(0)
		for _, b := range p {
			e := int(s)*m.nclass + int(m.class[b])
			if m.delta[e] < 0 {
				n := newState()
				m.delta[e] = n
			}
			s = m.delta[e]
		}
		if m.out[s] < 0 {
			m.out[s] = int32(i) // the earlier of two equal patterns wins
		}
	}
	// Breadth first: failure links turn the trie into a DFA, and each
	// state's output takes in its failure state's.
	fail := make([]int32, len(m.out))
	queue := make([]int32, 0, len(m.out))
	for c := range m.nclass {
		if n := m.delta[c]; n > 0 {
			fail[n] = 0
			queue = append(queue, n)
		} else {
			m.delta[c] = 0
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if o := m.out[fail[s]]; o >= 0 && (m.out[s] < 0 || o < m.out[s]) {
			m.out[s] = o
		}
		for c := range m.nclass {
			e := int(s)*m.nclass + c
			if n := m.delta[e]; n > 0 {
				fail[n] = m.delta[int(fail[s])*m.nclass+c]
				queue = append(queue, n)
			} else {
				m.delta[e] = m.delta[int(fail[s])*m.nclass+c]
			}
		}
	}
	return m
}

// first returns the lowest index of a pattern occurring in text, -1 if none.
func (m *matcher) first(text []byte) int {
	best := int32(-1)
	s := int32(0)
	n := m.nclass
	for _, b := range text {
		s = m.delta[int(s)*n+int(m.class[b])]
		if o := m.out[s]; o >= 0 && (best < 0 || o < best) {
			if o == 0 {
				return 0
			}
			best = o
		}
	}
	return int(best)
}

// Package event is the detector's event model: the flat Event every
// decoder fills and the window counts, its Detail for the high-cardinality
// part, the scopes, kinds, roles and shared-data classes, and the interner
// of versions. It is a leaf: every stage imports it, it imports none.
package event

import (
	"fmt"
	"strings"
	"sync"

	"github.com/wikimedia/pretrain-detector/wikimap"
)

// Kind says whether an event is a served request or a logged error.
type Kind uint8

const (
	KindNone Kind = iota
	KindRequest
	KindError
)

// Scope says which deployment served an event. Pretrain is identified by
// namespace or servergroup, never by version (docs/domain.md section 1).
type Scope uint8

const (
	ScopeTrain Scope = iota
	ScopePretrain
	NumScopes = 2
)

func (s Scope) String() string {
	if s == ScopePretrain {
		return "pretrain"
	}
	return "train"
}

// Role is the kind of server that handled an event, from servergroup or the
// Kubernetes release. Jobrunners matter: testwiki jobs can run on the train
// jobrunners (the changeprop caveat), so Pretrain-written data can fail there.
type Role uint8

const (
	RoleUnknown Role = iota
	RoleWeb
	RoleAPI
	RoleJobrunner
	RoleParsoid
	RoleDebug
	RoleCanary
)

// SharedClass names the shared-data path an error implicates, if any
// (docs/domain.md section 2).
type SharedClass uint8

const (
	SharedNone          SharedClass = iota
	SharedCoreDB                    // rdbms, DBQuery, DBReplication, DBConnection; libs/rdbms frames
	SharedCentralAuth               // centralauth DB, CentralAuth sessions
	SharedX1                        // extension1: Echo, wikishared
	SharedParserCache               // ParserCache, SQLBagOStuff pc tables
	SharedObjectCache               // memcached, WANObjectCache, objectcache
	SharedMainStash                 // x2 main stash
	SharedSession                   // session store
	SharedExternalStore             // revision text
	SharedJobQueue                  // JobExecutor, runJobs, EventBus
	SharedCommons                   // file repo, GlobalUsage
	SharedWikibase                  // Wikibase repo (testwikidatawiki)
	SharedMetawiki                  // OAuth, BotPasswords, CentralNotice
	SharedOther                     // poolcounter, redis
	NumSharedClasses
)

var sharedClassNames = [NumSharedClasses]string{
	"", "core-db", "centralauth", "x1", "parsercache", "objectcache", "mainstash",
	"session", "externalstore", "jobqueue", "commons", "wikibase", "metawiki", "other",
}

func (c SharedClass) String() string {
	if c >= NumSharedClasses {
		return "unknown"
	}
	return sharedClassNames[c]
}

// Event is one decoded record. It is a flat value so that the hot path
// copies it without allocating.
type Event struct {
	Time        int64  // event time, Unix nanoseconds
	Fingerprint uint64 // errors only: see Fingerprint
	Version     uint32 // interned mwversion, 0 when unknown
	Rollout     uint32 // interned "<release>-<pod-template-hash>" of the serving pod, 0 when unknown: a new one in a scope is a new rollout (Pretrain's mwversion does not change per deploy)
	DurationUS  uint32 // requests only
	Wiki        wikimap.ID
	Status      uint16 // requests only: HTTP status
	Kind        Kind
	Scope       Scope
	Role        Role
	Shared      SharedClass
}

// Detail carries an error's text. Its slices point into the Kafka record (or
// the decoder's buffer, for strings that held escapes) and are valid only
// until the next Decode: the window copies what it keeps, once per
// fingerprint, so no event allocates.
type Detail struct {
	Message     []byte // normalized message without the "[{reqId}] {exception_url}   " prefix
	Exemplar    []byte // the raw message of this occurrence
	Class       []byte // exception class
	Channel     []byte
	File        []byte // origin file without the line number
	Frame       []byte // the trace frame that implicated shared data, if any
	Trace       []byte
	Version     []byte // mwversion as logged
	Servergroup []byte
	ReqID       []byte
}

// Reset empties d, keeping nothing.
func (d *Detail) Reset() { *d = Detail{} }

// Interner maps short, low-cardinality strings (versions) to stable small ids.
// Lookups of known strings take a read lock and allocate nothing.
type Interner struct {
	mu   sync.RWMutex
	ids  map[string]uint32
	strs []string
}

// NewInterner returns an Interner where id 0 is the empty string.
func NewInterner() *Interner {
	return &Interner{ids: map[string]uint32{"": 0}, strs: []string{""}}
}

// ID returns b's id, adding it if new.
func (in *Interner) ID(b []byte) uint32 {
	in.mu.RLock()
	id, ok := in.ids[string(b)]
	in.mu.RUnlock()
	if ok {
		return id
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if id, ok := in.ids[string(b)]; ok {
		return id
	}
	s := string(b)
	id = uint32(len(in.strs))
	in.strs = append(in.strs, s)
	in.ids[s] = id
	return id
}

// String returns the string with the given id, or "" if there is none.
func (in *Interner) String(id uint32) string {
	in.mu.RLock()
	defer in.mu.RUnlock()
	if int(id) >= len(in.strs) {
		return ""
	}
	return in.strs[id]
}

// ParseSharedClass parses a SharedClass.String() value; "none" is SharedNone.
func ParseSharedClass(s string) (SharedClass, error) {
	if s == "none" {
		return SharedNone, nil
	}
	for c := SharedNone + 1; c < NumSharedClasses; c++ {
		if c.String() == s {
			return c, nil
		}
	}
	names := make([]string, 0, NumSharedClasses)
	for c := SharedNone + 1; c < NumSharedClasses; c++ {
		names = append(names, c.String())
	}
	return SharedNone, fmt.Errorf("unknown shared-data class %q (want one of %s)", s, strings.Join(names, ", "))
}

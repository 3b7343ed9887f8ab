package decode

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/wikimedia/pretrain-detector/event"
)

// The expected decodings of the real MediaWiki samples, keyed by what the
// record is; the Kafka-input, Logstash-legacy and Logstash-ECS files hold
// the same events in three shapes.
var (
	wantMemcachedEnwiki = want{
		time: "2020-06-08T04:23:54.618073Z", kind: event.KindError, wiki: "enwiki", scope: event.ScopeTrain,
		version: "1.35.0-wmf.35", shared: event.SharedObjectCache,
		message:  `Memcached error for key "{memcached-key}" on server "{memcached-server}": A TIMEOUT OCCURRED`,
		exemplar: `Memcached error for key "enwiki:pcache:idhash:41768916-0!canonical" on server "127.0.0.1:11213": A TIMEOUT OCCURRED`,
		channel:  "memcached", frame: "memcached", dversion: "1.35.0-wmf.35",
		reqID: "44004484-7efc-48a4-bbe1-dfecb2813af5",
	}
	wantInvariantZhwiki = want{
		time: "2021-10-08T05:09:10.951366Z", kind: event.KindError, wiki: "zhwiki", scope: event.ScopeTrain, role: event.RoleParsoid,
		version:  "1.38.0-wmf.3",
		message:  `Wikimedia\Assert\InvariantException: Invariant failed: Bad UTF-8 at start of string`,
		exemplar: `[8fabbd5e-184a-47e0-9bb8-514846c8ae2c] /w/rest.php/zh.wikipedia.org/v3/page/pagebundle/2018%E5%B9%B4%E8%88%AA%E5%A4%A9%E6%B4%BB%E5%8A%A8%E5%88%97%E8%A1%A8/63910636   Wikimedia\Assert\InvariantException: Invariant failed: Bad UTF-8 at start of string`,
		class:    `Wikimedia\Assert\InvariantException`, channel: "exception",
		file:     "/srv/mediawiki/php-1.38.0-wmf.3/vendor/wikimedia/assert/src/Assert.php",
		trace:    "from /srv/mediawiki/php-1.38.0-wmf.3/vendor/wikimedia/assert/src/Assert.php(224)\n#0 ...",
		dversion: "1.38.0-wmf.3", servergroup: "parsoid", reqID: "8fabbd5e-184a-47e0-9bb8-514846c8ae2c",
	}
	wantNoticeWikidata = want{
		time: "2021-10-14T09:08:00.378391Z", kind: event.KindError, wiki: "wikidatawiki", scope: event.ScopeTrain, role: event.RoleWeb,
		version:  "1.38.0-wmf.4",
		message:  "PHP Notice: A non well formed numeric value encountered",
		exemplar: "[46c86a62-c331-4e29-ac35-a6ab1d19fe47] /w/index.php?contribs=user&limit=50&month=1*318*313*0&namespace=&tagfilter=&target=127.0.0.1&title=Special:Contributions&year=2013   PHP Notice: A non well formed numeric value encountered",
		class:    "ErrorException", channel: "error",
		file:     "/srv/mediawiki/php-1.38.0-wmf.4/includes/pager/ReverseChronologicalPager.php",
		trace:    "from /srv/mediawiki/php-1.38.0-wmf.4/includes/pager/ReverseChronologicalPager.php(148)\n#0 ...",
		dversion: "1.38.0-wmf.4", servergroup: "appserver", reqID: "46c86a62-c331-4e29-ac35-a6ab1d19fe47",
	}
)

// atKafkaTime is w with the event time replaced: Logstash's outputs carry
// no timestamp, so the Kafka time stands in.
func atKafkaTime(w want, ts string) want {
	w.time = ts
	return w
}

func TestMediaWikiLogSamples(t *testing.T) {
	const kafkaTS = "2026-08-21T10:00:00Z"
	kafka := mustTime(t, kafkaTS)
	cases := []struct {
		file string
		// Kafka time given to Decode: zero for the Kafka-input samples
		// (their @timestamp is years old; zero skips the skew check).
		kafka time.Time
		want  []want
	}{
		{"mediawiki-log-events.kafka-input.jsonl", time.Time{}, []want{
			wantMemcachedEnwiki,
			wantInvariantZhwiki,
			wantNoticeWikidata,
			// php-wmerrors fatal on a jobrunner: no wiki field, and its
			// Host is the jobrunner service, which is no wiki: skipped.
			{err: ErrNoWiki},
			// php-fpm slowlog: not a MediaWiki log line.
			{err: ErrSkip},
		}},
		{"mediawiki-log-events.logstash-legacy.jsonl", kafka, []want{
			atKafkaTime(wantMemcachedEnwiki, kafkaTS),
			atKafkaTime(wantInvariantZhwiki, kafkaTS),
			atKafkaTime(wantNoticeWikidata, kafkaTS),
			{err: ErrNoWiki},
		}},
		{"mediawiki-log-events.logstash-ecs.jsonl", kafka, []want{
			atKafkaTime(wantInvariantZhwiki, kafkaTS),
			atKafkaTime(wantNoticeWikidata, kafkaTS),
			{err: ErrNoWiki}, // url.full host jobrunner.discovery.wmnet
			{err: ErrSkip},
		}},
	}
	for _, tc := range cases {
		recs := readLines(t, tc.file)
		require.Len(t, recs, len(tc.want), tc.file)
		for i, w := range tc.want {
			t.Run(tc.file+"/"+string(rune('1'+i)), func(t *testing.T) {
				e := newEnv(t, FormatMediaWikiLog, Options{})
				e.check(t, recs[i], tc.kafka, w)
			})
		}
	}
}

// The inputs of the Logstash filter test are the Kafka-input events; the
// fourth has two "timestamp" keys (rsyslog's, then the record's own).
func TestMediaWikiLogYAMLInputs(t *testing.T) {
	recs := yamlInputs(t, "logstash-test-mediawiki.yaml")
	wants := []want{wantMemcachedEnwiki, wantInvariantZhwiki, wantNoticeWikidata, {err: ErrNoWiki}, {err: ErrSkip}}
	require.Len(t, recs, len(wants))
	for i, w := range wants {
		t.Run(string(rune('1'+i)), func(t *testing.T) {
			e := newEnv(t, FormatMediaWikiLog, Options{})
			e.check(t, recs[i], time.Time{}, w)
		})
	}
}

func TestMediaWikiLogK8s(t *testing.T) {
	const v = "1.47.0-wmf.16"
	const p = "/srv/mediawiki/php-1.47.0-wmf.16/"
	recs := readLines(t, "mediawiki-k8s.jsonl")
	cases := []struct {
		name string
		want want
	}{
		{"pretrain DBQueryError in libs/rdbms", want{
			time: "2026-08-21T10:20:01.123456Z", kind: event.KindError, wiki: "testwiki", scope: event.ScopePretrain, role: event.RoleWeb,
			version: v, rollout: "main-6d8f7c9b5", shared: event.SharedCoreDB,
			message:  `Wikimedia\Rdbms\DBQueryError: Error {errno}: {errstr}`,
			exemplar: `[a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d] /w/api.php?action=query&meta=notifications   Wikimedia\Rdbms\DBQueryError: Error 1146: Table 'testwiki.echo_notification' doesn't exist (db1234)`,
			class:    `Wikimedia\Rdbms\DBQueryError`, channel: "exception",
			file:     p + "includes/libs/rdbms/database/Database.php",
			frame:    p + "includes/libs/rdbms/database/Database.php",
			trace:    traceOf(t, recs[0]),
			dversion: v, servergroup: "kube-mw-pretrain", reqID: "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
		}},
		{"train jobrunner runs a testwiki job: CentralAuth two frames out", want{
			time: "2026-08-21T10:20:02.5Z", kind: event.KindError, wiki: "testwiki", scope: event.ScopeTrain, role: event.RoleJobrunner,
			version: v, rollout: "main-69c8d7f5b4", shared: event.SharedCentralAuth,
			message:  `TypeError: MediaWiki\User\User::getBlockId(): Return value must be of type int, string returned`,
			exemplar: `[b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e] /rpc/RunSingleJob.php   TypeError: MediaWiki\User\User::getBlockId(): Return value must be of type int, string returned`,
			class:    "TypeError", channel: "exception",
			file:     p + "includes/user/User.php",
			frame:    "#2 " + p + `extensions/CentralAuth/includes/User/CentralAuthUser.php(2981): MediaWiki\User\UserFactory->newFromName(string)`,
			trace:    traceOf(t, recs[1]),
			dversion: v, servergroup: "kube-mw-jobrunner", reqID: "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e",
		}},
		{"pretrain debug deprecation at WARNING", want{err: ErrSkip}},
		{"train rdbms channel at ERROR", want{
			time: "2026-08-21T10:20:04.25Z", kind: event.KindError, wiki: "enwiki", scope: event.ScopeTrain, role: event.RoleWeb,
			version: v, rollout: "main-5f6b8d7c9d", shared: event.SharedCoreDB,
			message:  "{fname}: all replica DBs lagged. Switch to read-only mode",
			exemplar: `Wikimedia\Rdbms\LoadBalancer::getReaderIndex: all replica DBs lagged. Switch to read-only mode`,
			channel:  "rdbms", frame: "rdbms",
			dversion: v, servergroup: "kube-mw-web", reqID: "d4e5f6a7-b8c9-4d0e-1f2a-3b4c5d6e7f8a",
		}},
		{"pretrain canary memcached at INFO", want{err: ErrSkip}},
		{"pretrain jobrunner php-wmerrors fatal: wiki from server, version from the path", want{
			time: "2026-08-21T10:20:06.777Z", kind: event.KindError, wiki: "testwiki", scope: event.ScopePretrain, role: event.RoleJobrunner,
			version: "1.47.0-wmf.17", rollout: "jobrunner-7d9f8b6c5", shared: event.SharedObjectCache,
			message:  "PHP Fatal error: Allowed memory size of 1468006400 bytes exhausted (tried to allocate 20480 bytes) in /srv/mediawiki/php-1.47.0-wmf.17/includes/libs/objectcache/wancache/WANObjectCache.php on line 1502",
			exemplar: "[e5f6a7b8-c9d0-4e1f-2a3b-4c5d6e7f8a9b] PHP Fatal error: Allowed memory size of 1468006400 bytes exhausted (tried to allocate 20480 bytes) in /srv/mediawiki/php-1.47.0-wmf.17/includes/libs/objectcache/wancache/WANObjectCache.php on line 1502",
			channel:  "exception",
			file:     "/srv/mediawiki/php-1.47.0-wmf.17/includes/libs/objectcache/wancache/WANObjectCache.php",
			frame:    "/srv/mediawiki/php-1.47.0-wmf.17/includes/libs/objectcache/wancache/WANObjectCache.php",
			trace:    "#0 /srv/mediawiki/php-1.47.0-wmf.17/includes/libs/objectcache/wancache/WANObjectCache.php(1502): unserialize(string)\n#1 {main}",
			dversion: "1.47.0-wmf.17", servergroup: "kube-mw-pretrain-jobrunner", reqID: "e5f6a7b8-c9d0-4e1f-2a3b-4c5d6e7f8a9b",
		}},
	}
	require.Len(t, recs, len(cases))
	e := newEnv(t, FormatMediaWikiLog, Options{})
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kafka := time.Time{}
			if tc.want.time != "" {
				kafka = mustTime(t, tc.want.time).Add(800 * time.Millisecond) // sidecar → Kafka delay
			}
			e.check(t, recs[i], kafka, tc.want)
		})
	}
}

// traceOf returns exception.trace of a record, decoded by encoding/json.
func traceOf(t *testing.T, rec []byte) string {
	t.Helper()
	var v struct {
		Exception struct {
			Trace string `json:"trace"`
		} `json:"exception"`
	}
	require.NoError(t, json.Unmarshal(rec, &v))
	require.NotEmpty(t, v.Exception.Trace)
	return v.Exception.Trace
}

// syslog_cee writes "host", then splices MediaWiki's JSON with its own
// "host". The decoder must not depend on either: swapping them or removing
// both changes nothing, and the record is not rejected.
func TestMediaWikiLogDuplicateHost(t *testing.T) {
	rec := readLines(t, "mediawiki-k8s.jsonl")[0]
	const pod = `"host": "mw-pretrain.eqiad.main-6d8f7c9b5-x7k2p"`
	require.Equal(t, 2, bytes.Count(rec, []byte(pod)), "the sample holds two top-level host keys")

	first := bytes.Replace(rec, []byte(pod), []byte(`"host": "rsyslog-host"`), 1)
	swapped := bytes.Replace(bytes.Replace(rec, []byte(pod), []byte(`"host": "mediawiki-host"`), 1),
		[]byte(pod), []byte(`"host": "rsyslog-host"`), 1)
	noHost := bytes.ReplaceAll(rec, []byte(pod+", "), nil)
	require.NotContains(t, string(noHost), pod)
	hostObject := bytes.Replace(rec, []byte(pod), []byte(`"host": {"name": "mw-pretrain.eqiad.main-6d8f7c9b5-x7k2p"}`), 1)

	e := newEnv(t, FormatMediaWikiLog, Options{})
	var ref event.Event
	var refDet event.Detail
	require.NoError(t, e.d.Decode(rec, time.Time{}, &ref, &refDet))
	require.Equal(t, event.ScopePretrain, ref.Scope)
	require.Equal(t, "main-6d8f7c9b5", e.rollouts.String(ref.Rollout), "rollout from kubernetes.pod_name")
	refMsg := string(refDet.Message)
	for name, variant := range map[string][]byte{"distinct hosts": first, "swapped": swapped, "no host": noHost, "ECS host object": hostObject} {
		t.Run(name, func(t *testing.T) {
			var ev event.Event
			var det event.Detail
			require.NoError(t, e.d.Decode(variant, time.Time{}, &ev, &det))
			require.Equal(t, ref, ev)
			require.Equal(t, refMsg, string(det.Message))
		})
	}
}

// A key given twice: the last one wins, as in encoding/json v1.
func TestMediaWikiLogDuplicateKeyLastWins(t *testing.T) {
	rec := readLines(t, "mediawiki-log-events.kafka-input.jsonl")[1] // zhwiki
	rec = bytes.Replace(rec, []byte(`"caught_by": "mwe_handler"}`), []byte(`"caught_by": "mwe_handler", "wiki": "testwiki", "@timestamp": "2021-10-08T05:09:11Z"}`), 1)
	var v struct {
		Wiki string `json:"wiki"`
	}
	require.NoError(t, json.Unmarshal(rec, &v))
	require.Equal(t, "testwiki", v.Wiki, "encoding/json keeps the last")

	e := newEnv(t, FormatMediaWikiLog, Options{})
	var ev event.Event
	require.NoError(t, e.d.Decode(rec, time.Time{}, &ev, nil))
	require.Equal(t, "testwiki", e.wikis.Wiki(ev.Wiki).DBName)
	require.Equal(t, mustTime(t, "2021-10-08T05:09:11Z").UnixNano(), ev.Time)
}

// mwRecord builds a small legacy-format record from key/value JSON pairs.
func mwRecord(pairs ...string) []byte {
	var b strings.Builder
	b.WriteString(`{"@timestamp": "2026-08-21T10:00:00.000001+00:00", "type": "mediawiki", "message": "[r] /w   X: y", "normalized_message": "[{reqId}] {exception_url}   X: y"`)
	for i := 0; i+1 < len(pairs); i += 2 {
		b.WriteString(`, "` + pairs[i] + `": ` + pairs[i+1])
	}
	b.WriteString("}")
	return []byte(b.String())
}

func TestMediaWikiLogCounting(t *testing.T) {
	cases := []struct {
		name string
		rec  []byte
		err  error // nil: counted
	}{
		{"exception ERROR", mwRecord("channel", `"exception"`, "level", `"ERROR"`, "wiki", `"testwiki"`), nil},
		{"exception CRITICAL", mwRecord("channel", `"exception"`, "level", `"CRITICAL"`, "wiki", `"testwiki"`), nil},
		{"fatal EMERGENCY lower case", mwRecord("channel", `"fatal"`, "level", `"emergency"`, "wiki", `"testwiki"`), nil},
		{"error WARNING (deprecation)", mwRecord("channel", `"error"`, "level", `"WARNING"`, "wiki", `"testwiki"`), ErrSkip},
		{"monolog_level wins over level", mwRecord("channel", `"error"`, "level", `"ERROR"`, "monolog_level", "300", "wiki", `"testwiki"`), ErrSkip},
		{"monolog_level 500", mwRecord("channel", `"exception"`, "monolog_level", "500", "wiki", `"testwiki"`), nil},
		{"syslog severity when no level", mwRecord("channel", `"exception"`, "severity", `"err"`, "wiki", `"testwiki"`), nil},
		{"syslog severity warning", mwRecord("channel", `"exception"`, "severity", `"warning"`, "wiki", `"testwiki"`), ErrSkip},
		{"shared channel DBQuery ERROR", mwRecord("channel", `"DBQuery"`, "level", `"ERROR"`, "wiki", `"testwiki"`), nil},
		{"shared channel CentralAuth INFO", mwRecord("channel", `"CentralAuth"`, "level", `"INFO"`, "wiki", `"testwiki"`), ErrSkip},
		{"other channel ERROR", mwRecord("channel", `"AbuseFilter"`, "level", `"ERROR"`, "wiki", `"testwiki"`), ErrSkip},
		{"channel case matters", mwRecord("channel", `"Exception"`, "level", `"ERROR"`, "wiki", `"testwiki"`), ErrSkip},
		{"no channel", mwRecord("level", `"ERROR"`, "wiki", `"testwiki"`), ErrSkip},
		{"no level at all", mwRecord("channel", `"exception"`, "wiki", `"testwiki"`), ErrMissingField},
		{"unknown level name", mwRecord("channel", `"exception"`, "level", `"LOUD"`, "wiki", `"testwiki"`), ErrWrongType},
		{"monolog_level not a number", mwRecord("channel", `"exception"`, "monolog_level", `"high"`, "wiki", `"testwiki"`), ErrWrongType},
		{"wiki a number", mwRecord("channel", `"exception"`, "level", `"ERROR"`, "wiki", "5"), ErrWrongType},
		{"unknown wiki", mwRecord("channel", `"exception"`, "level", `"ERROR"`, "wiki", `"nosuchwiki"`), ErrUnknownWiki},
		{"no wiki, no server", mwRecord("channel", `"exception"`, "level", `"ERROR"`), ErrNoWiki},
		{"no wiki, internal server", mwRecord("channel", `"exception"`, "level", `"ERROR"`, "server", `"mw-jobrunner.discovery.wmnet"`), ErrNoWiki},
		{"no wiki, unknown public server", mwRecord("channel", `"exception"`, "level", `"ERROR"`, "server", `"xx.wikipedia.org"`), ErrUnknownWiki},
		{"no wiki, mobile server", mwRecord("channel", `"exception"`, "level", `"ERROR"`, "server", `"test.m.wikipedia.org"`), nil},
		{"null wiki falls back to server", mwRecord("channel", `"exception"`, "level", `"ERROR"`, "wiki", "null", "server", `"test.wikipedia.org"`), nil},
		{"channel an object", mwRecord("channel", `{"name": "exception"}`, "level", `"ERROR"`), ErrWrongType},
		{"class a number", mwRecord("channel", `"exception"`, "level", `"ERROR"`, "wiki", `"testwiki"`, "exception", `{"class": 7}`), ErrWrongType},
		{"bad @timestamp", []byte(`{"@timestamp": "yesterday", "channel": "exception", "level": "ERROR", "wiki": "testwiki", "message": "m"}`), ErrWrongType},
		{"no message at all", []byte(`{"@timestamp": "2026-08-21T10:00:00Z", "channel": "exception", "level": "ERROR", "wiki": "testwiki"}`), ErrMissingField},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, FormatMediaWikiLog, Options{})
			var ev event.Event
			var det event.Detail
			err := e.d.Decode(tc.rec, mustTime(t, "2026-08-21T10:00:01Z"), &ev, &det)
			if tc.err != nil {
				require.Equal(t, tc.err, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, event.KindError, ev.Kind)
			require.Equal(t, "testwiki", e.wikis.Wiki(ev.Wiki).DBName)
			require.Equal(t, "X: y", string(det.Message))
		})
	}
}

func TestMediaWikiLogTime(t *testing.T) {
	at := `"@timestamp": "2026-08-21T10:00:00.25+02:00"`
	ts := `"timestamp": "2026-08-21T09:00:00+00:00"`
	base := `"channel": "exception", "level": "ERROR", "wiki": "testwiki", "message": "m"`
	kafka := mustTime(t, "2026-08-21T08:00:01Z")
	cases := []struct {
		name  string
		rec   string
		kafka time.Time
		want  string
		err   error
	}{
		{"@timestamp with offset", "{" + at + ", " + ts + ", " + base + "}", kafka, "2026-08-21T08:00:00.25Z", nil},
		{"timestamp when no @timestamp", "{" + ts + ", " + base + "}", time.Time{}, "2026-08-21T09:00:00Z", nil},
		{"Kafka time when neither", "{" + base + "}", kafka, "2026-08-21T08:00:01Z", nil},
		{"neither and no Kafka time", "{" + base + "}", time.Time{}, "", ErrMissingField},
		{"skew within an hour", "{" + ts + ", " + base + "}", kafka, "2026-08-21T09:00:00Z", nil},
		{"skew beyond an hour", "{" + ts + ", " + base + "}", kafka.Add(-2 * time.Second), "", ErrTimeRange},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, FormatMediaWikiLog, Options{})
			var ev event.Event
			err := e.d.Decode([]byte(tc.rec), tc.kafka, &ev, nil)
			if tc.err != nil {
				require.Equal(t, tc.err, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, mustTime(t, tc.want).UnixNano(), ev.Time)
		})
	}
}

func TestMediaWikiLogScopeAndRole(t *testing.T) {
	k8s := func(ns, pod, release string) string {
		return `{"host": "n", "namespace_name": "` + ns + `", "pod_name": "` + pod + `", "labels": {"deployment": "` + ns + `", "release": "` + release + `"}}`
	}
	cases := []struct {
		name    string
		pairs   []string
		scope   event.Scope
		role    event.Role
		rollout string
	}{
		{"pretrain servergroup, bare metal", []string{"servergroup", `"kube-mw-pretrain-canary"`}, event.ScopePretrain, event.RoleCanary, ""},
		{"pretrain namespace only", []string{"kubernetes", k8s("mw-pretrain", "mw-pretrain.codfw.main-6d8f7c9b5-x7k2p", "main")}, event.ScopePretrain, event.RoleWeb, "main-6d8f7c9b5"},
		{"pretrain jobrunner canary", []string{"servergroup", `"kube-mw-pretrain-jobrunner-canary"`, "kubernetes", k8s("mw-pretrain", "mw-pretrain.eqiad.jobrunner-canary-7d9f8b6c5-p5r7t", "jobrunner-canary")}, event.ScopePretrain, event.RoleJobrunner, "jobrunner-canary-7d9f8b6c5"},
		{"train api", []string{"servergroup", `"kube-mw-api-ext"`, "kubernetes", k8s("mw-api-ext", "mw-api-ext.eqiad.main-7b957d95c7-gwrnc", "main")}, event.ScopeTrain, event.RoleAPI, "main-7b957d95c7"},
		{"train debug", []string{"servergroup", `"kube-mw-debug"`}, event.ScopeTrain, event.RoleDebug, ""},
		{"bare metal api_appserver", []string{"servergroup", `"api_appserver"`}, event.ScopeTrain, event.RoleAPI, ""},
		{"testserver", []string{"servergroup", `"testserver"`}, event.ScopeTrain, event.RoleUnknown, ""},
		{"pod name not from a ReplicaSet", []string{"kubernetes", k8s("mw-web", "mw1384", "main")}, event.ScopeTrain, event.RoleWeb, ""},
		{"statefulset pod", []string{"kubernetes", k8s("mw-web", "mw-web-0", "main")}, event.ScopeTrain, event.RoleWeb, ""},
		{"hash with a vowel is no hash", []string{"kubernetes", k8s("mw-web", "mw-web.eqiad.main-6d8f7a9b5-x7k2p", "main")}, event.ScopeTrain, event.RoleWeb, ""},
		{"no release label: the deployment part of the pod name", []string{"kubernetes", `{"namespace_name": "mw-web", "pod_name": "mw-web.eqiad.main-5f6b8d7c9d-q2w4z"}`}, event.ScopeTrain, event.RoleUnknown, "mw-web.eqiad.main-5f6b8d7c9d"},
		{"ECS orchestrator", []string{"orchestrator", `{"namespace": "mw-pretrain", "resource": {"name": "mw-pretrain.eqiad.main-6d8f7c9b5-x7k2p"}}`, "labels", `{"release": "main"}`}, event.ScopePretrain, event.RoleWeb, "main-6d8f7c9b5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, FormatMediaWikiLog, Options{})
			rec := mwRecord(append([]string{"channel", `"exception"`, "level", `"ERROR"`, "wiki", `"testwiki"`}, tc.pairs...)...)
			var ev event.Event
			require.NoError(t, e.d.Decode(rec, time.Time{}, &ev, nil))
			require.Equal(t, tc.scope, ev.Scope, "scope")
			require.Equal(t, tc.role, ev.Role, "role")
			require.Equal(t, tc.rollout, e.rollouts.String(ev.Rollout), "rollout")
			// The cached origin must give the same answer the second time.
			var again event.Event
			require.NoError(t, e.d.Decode(rec, time.Time{}, &again, nil))
			require.Equal(t, ev, again)
		})
	}
}

func TestMediaWikiLogOptions(t *testing.T) {
	rec := mwRecord("channel", `"exception"`, "level", `"ERROR"`, "wiki", `"testwiki"`, "servergroup", `"kube-mw-next"`,
		"kubernetes", `{"namespace_name": "mw-next"}`)
	e := newEnv(t, FormatMediaWikiLog, Options{PretrainServergroupPrefix: "kube-mw-next"})
	var ev event.Event
	require.NoError(t, e.d.Decode(rec, time.Time{}, &ev, nil))
	require.Equal(t, event.ScopePretrain, ev.Scope)

	e = newEnv(t, FormatMediaWikiLog, Options{PretrainServergroupPrefix: "kube-mw-x", PretrainDeployment: "mw-next"})
	require.NoError(t, e.d.Decode(rec, time.Time{}, &ev, nil))
	require.Equal(t, event.ScopePretrain, ev.Scope)

	e = newEnv(t, FormatMediaWikiLog, Options{})
	require.NoError(t, e.d.Decode(rec, time.Time{}, &ev, nil))
	require.Equal(t, event.ScopeTrain, ev.Scope)

	// A classifier without the DBQuery channel leaves it uncounted.
	cfg := DefaultClassifierConfig()
	delete(cfg.Channels, "DBQuery")
	cl, err := NewClassifier(cfg)
	require.NoError(t, err)
	db := mwRecord("channel", `"DBQuery"`, "level", `"ERROR"`, "wiki", `"testwiki"`)
	e = newEnv(t, FormatMediaWikiLog, Options{Classifier: cl})
	require.Equal(t, ErrSkip, e.d.Decode(db, time.Time{}, &ev, nil))
}

func TestStripRequestPrefix(t *testing.T) {
	cases := []struct{ in, want string }{
		{"[abc] /w/index.php?x=1   PHP Notice: y", "PHP Notice: y"},
		{"[ede088f4] Uncaught RedisException: Connection timed out", "Uncaught RedisException: Connection timed out"},
		{"Memcached error for key", "Memcached error for key"},
		{"[not an id] x", "[not an id] x"},
		{"[abc]", "[abc]"},
		{"", ""},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			require.Equal(t, tc.want, string(stripRequestPrefix([]byte(tc.in))))
		})
	}
}

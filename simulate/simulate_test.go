package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func TestScenarios(t *testing.T) {
	want := []string{
		"quiet", "quiet-week", "pretrain-regression", "pretrain-regression-slow", "spillover-s3",
		"spillover-jobrunner", "train-regression", "fleet-db-incident", "pretrain-leak", "wiki-anomaly", "demo",
		"s3-db-incident", "s3-db-outage", "pretrain-request-loop", "pretrain-regression-loops", "debug-release",
		"spillover-existing", "cache-degradation", "spillover-global", "train-then-pretrain", "pretrain-regression-redeploy",
		"wiki-5xx", "placebo-week",
	}
	var got []string
	for _, s := range Scenarios() {
		got = append(got, s.Name)
		require.NotEmpty(t, s.Description, s.Name)
		require.Positive(t, s.DefaultDuration, s.Name)
	}
	require.Equal(t, want, got)

	// The kinds each scenario's ground truth must carry.
	kinds := map[string][]string{
		"quiet":                        nil,
		"quiet-week":                   nil,
		"pretrain-regression":          {"pretrain-regression", "pretrain-regression"},
		"pretrain-regression-slow":     {"pretrain-regression"},
		"spillover-s3":                 {"shared-data-spillover"},
		"spillover-jobrunner":          {"shared-data-spillover"},
		"train-regression":             {"train-regression"},
		"fleet-db-incident":            {"fleet-incident"},
		"pretrain-leak":                {"pretrain-leak"},
		"wiki-anomaly":                 {"wiki-anomaly"},
		"demo":                         {"shared-data-spillover"},
		"s3-db-incident":               {KindSectionIncident},
		"s3-db-outage":                 {KindSectionIncident},
		"pretrain-request-loop":        {KindNoise, KindNoise},
		"pretrain-regression-loops":    {"pretrain-regression"},
		"debug-release":                {KindNoise},
		"spillover-existing":           {"shared-data-spillover"},
		"cache-degradation":            {KindFleetIncident},
		"spillover-global":             {"shared-data-spillover"},
		"train-then-pretrain":          {"train-regression"},
		"pretrain-regression-redeploy": {"pretrain-regression"},
		"wiki-5xx":                     {"wiki-anomaly", "wiki-anomaly"},
		"placebo-week": {KindSectionIncident, KindSectionIncident, "train-regression", KindSectionIncident, "train-regression",
			KindSectionIncident, "train-regression", KindSectionIncident, KindSectionIncident, KindSectionIncident},
	}
	m := testMap(t)
	for _, s := range Scenarios() {
		t.Run(s.Name, func(t *testing.T) {
			gt, err := Plan(Config{Scenario: s.Name, Seed: 7}, m)
			require.NoError(t, err)
			require.Equal(t, s.Name, gt.Scenario)
			require.Equal(t, s.DefaultDuration, gt.End.Sub(gt.Start))
			var k []string
			for _, inc := range gt.Incidents {
				k = append(k, inc.Kind)
				require.True(t, inc.Onset.Before(inc.End))
				require.False(t, inc.Onset.Before(gt.Start))
				require.False(t, inc.End.After(gt.End))
				require.NotEmpty(t, inc.Wikis)
				require.True(t, slices.IsSorted(inc.Wikis))
				if inc.ErrorsPerMinute != 0 || inc.Kind != "wiki-anomaly" { // a 5xx-only incident logs no error
					require.NotEmpty(t, inc.NormalizedMessage)
					require.NotEmpty(t, inc.Channel)
					if inc.ExceptionClass != "" {
						require.NotEmpty(t, inc.File)
					}
					require.Positive(t, inc.ErrorsPerMinute)
				}
				if inc.Kind != KindSectionIncident {
					require.Equal(t, inc.Kind == "wiki-anomaly", inc.Deploy == nil, "every incident but the wiki anomaly follows a deploy")
				}
				if inc.Deploy != nil {
					require.Contains(t, gt.Deploys, *inc.Deploy, "an incident follows one of the run's deploys")
					require.True(t, inc.Deploy.At.Before(inc.Onset))
				}
			}
			require.Equal(t, kinds[s.Name], k)
			require.NotEmpty(t, gt.Deploys, "every scenario has deploys")
			require.True(t, slices.IsSortedFunc(gt.Deploys, func(a, b Deploy) int { return a.At.Compare(b.At) }))
		})
	}
}

func TestPlanDeploys(t *testing.T) {
	m := testMap(t)
	t.Run("quiet-week", func(t *testing.T) {
		gt, err := Plan(Config{Scenario: "quiet-week", Seed: 3}, m)
		require.NoError(t, err)
		var trains []Deploy
		pretrain := 0
		for _, d := range gt.Deploys {
			if d.Scope == "train" {
				trains = append(trains, d)
				continue
			}
			pretrain++
			require.Equal(t, "1.47.0-alpha", d.Version, "wmf/next logs master's version")
		}
		require.GreaterOrEqual(t, pretrain, 7*24/6, "Pretrain deploys every 3-6 hours")
		require.LessOrEqual(t, pretrain, 7*24/3+1)
		require.Len(t, trains, 3)
		for i, want := range []struct {
			group string
			day   time.Weekday
		}{{"group0", time.Tuesday}, {"group1", time.Wednesday}, {"group2", time.Thursday}} {
			require.Equal(t, want.group, trains[i].Group)
			require.Equal(t, want.day, trains[i].At.Weekday())
			require.Equal(t, "1.47.0-wmf.17", trains[i].Version)
		}
	})
	t.Run("train-regression", func(t *testing.T) {
		gt, err := Plan(Config{Scenario: "train-regression", Seed: 3}, m)
		require.NoError(t, err)
		require.Len(t, gt.Deploys, 2)
		require.Equal(t, "pretrain", gt.Deploys[0].Scope)
		require.Equal(t, Deploy{Scope: "train", Group: "group1", Version: "1.47.0-wmf.17", At: gt.Deploys[0].At.Add(20 * time.Minute)}, gt.Deploys[1])
		require.Equal(t, gt.Deploys[1], *gt.Incidents[0].Deploy)
	})
	t.Run("short duration clips", func(t *testing.T) {
		gt, err := Plan(Config{Scenario: "spillover-s3", Duration: 30 * time.Minute}, m)
		require.NoError(t, err)
		require.Empty(t, gt.Incidents, "the incident would start after the end")
		for _, d := range gt.Deploys {
			require.True(t, d.At.Before(gt.End))
		}
	})
	t.Run("start override", func(t *testing.T) {
		start := time.Date(2027, 3, 2, 9, 30, 0, 0, time.FixedZone("x", 3600))
		gt, err := Plan(Config{Scenario: "demo", Start: start}, m)
		require.NoError(t, err)
		require.True(t, gt.Start.Equal(start))
		require.Equal(t, time.UTC, gt.Start.Location())
		require.Equal(t, start.Add(30*time.Minute).UTC(), gt.Deploys[0].At)
		require.Equal(t, start.Add(40*time.Minute).UTC(), gt.Incidents[0].Onset)
	})
}

func TestConfigErrors(t *testing.T) {
	m := testMap(t)
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string
	}{
		{"unknown scenario", Config{Scenario: "nope"}, "Scenario"},
		{"empty scenario", Config{}, "Scenario"},
		{"negative duration", Config{Scenario: "quiet", Duration: -time.Second}, "Duration"},
		{"negative speed", Config{Scenario: "quiet", Speed: -1}, "Speed"},
		{"NaN speed", Config{Scenario: "quiet", Speed: math.NaN()}, "Speed"},
		{"negative rate", Config{Scenario: "quiet", Rate: -5}, "Rate"},
		{"infinite rate", Config{Scenario: "quiet", Rate: math.Inf(1)}, "Rate"},
		{"huge rate", Config{Scenario: "quiet", Rate: 1e9}, "Rate"},
		{"negative testwiki rate", Config{Scenario: "quiet", TestwikiRate: -1}, "TestwikiRate"},
		{"bad DC", Config{Scenario: "quiet", DCs: []string{"eqiad", "Bad DC"}}, "DCs[1]"},
		{"duplicate DC", Config{Scenario: "quiet", DCs: []string{"eqiad", "eqiad"}}, "DCs"},
		{"topics per DC", Config{Scenario: "quiet", Topics: Topics{ErrorTopics: []string{"a"}}}, "Topics.ErrorTopics"},
		{"empty topic", Config{Scenario: "quiet", Topics: Topics{ErrorTopics: []string{"a", ""}}}, "Topics.ErrorTopics[1]"},
		{"negative batch", Config{Scenario: "quiet", BatchSize: -1}, "BatchSize"},
		{"ancient start", Config{Scenario: "quiet", Start: time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)}, "Start"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Plan(tc.cfg, m)
			require.ErrorIs(t, err, ErrConfig)
			require.Contains(t, err.Error(), tc.field+":")
			_, err = Run(context.Background(), tc.cfg, m, func(context.Context, []Record) error { return nil })
			require.ErrorIs(t, err, ErrConfig)
		})
	}
	t.Run("nil map", func(t *testing.T) {
		_, err := Plan(Config{Scenario: "quiet"}, nil)
		require.ErrorIs(t, err, ErrConfig)
	})
	t.Run("nil sink", func(t *testing.T) {
		_, err := Run(context.Background(), Config{Scenario: "quiet"}, m, nil)
		require.ErrorIs(t, err, ErrConfig)
	})
}

func TestDeterminism(t *testing.T) {
	cfg := Config{Scenario: "pretrain-regression", Seed: 42, Rate: 20, Duration: 80 * time.Minute}
	a := collect(t, cfg, withDigest)
	b := collect(t, cfg, withDigest)
	require.Len(t, a.gt.Incidents, 2, "the run covers the incident")
	require.Equal(t, a.gt, b.gt)
	require.Equal(t, a.records, b.records)
	require.Equal(t, a.digest, b.digest, "same Config, same bytes")

	cfg.Seed = 43
	c := collect(t, cfg, withDigest)
	require.NotEqual(t, a.digest, c.digest, "another seed, other records")
	require.NotEqual(t, a.gt.Deploys, c.gt.Deploys, "deploy jitter follows the seed")

	// Batch size changes the batching only, never the records.
	cfg.Seed = 42
	cfg.BatchSize = 7
	d := collect(t, cfg, withDigest)
	require.Equal(t, a.digest, d.digest)
	require.Equal(t, 7, d.maxBatch)
}

// shapeRef is what error events are compared with: the real Kafka samples
// (operations-mediawiki-config wmf-config/logging.php).
type shapeRef struct {
	samples [][]byte
	allowed map[string]bool // keys seen in the MediaWiki samples, plus the k8s wrapper
}

func newShapeRef(t *testing.T) *shapeRef {
	ref := &shapeRef{samples: readSamples(t), allowed: map[string]bool{}}
	for _, s := range ref.samples[:4] {
		for _, k := range topKeys(t, s) {
			ref.allowed[k] = true
		}
	}
	for _, k := range []string{"timestamp", "logsource", "host", "program", "severity", "facility", "kubernetes"} {
		ref.allowed[k] = true
	}
	return ref
}

// sampleKeys are sample i's keys without the retired ip/unique_id and the
// bare-metal rsyslog.* fields (k8s has the "kubernetes" block instead).
func (ref *shapeRef) sampleKeys(t *testing.T, i int) []string {
	var keys []string
	for _, k := range topKeys(t, ref.samples[i]) {
		if k == "ip" || k == "unique_id" || strings.HasPrefix(k, "rsyslog.") {
			continue
		}
		keys = append(keys, k)
	}
	return keys
}

// checkErrorEvent checks one generated error event against the samples and
// returns its shape: "fatal", "exception" or "log".
func (ref *shapeRef) check(t *testing.T, e errEvent) string {
	t.Helper()
	podRe := regexp.MustCompile(`^mw-[a-z-]+\.(eqiad|codfw)\.(main|canary|jobrunner)-[` + k8sAlphabet + `]{9,10}-[` + k8sAlphabet + `]{5}$`)
	keys := topKeys(t, e.raw)
	require.Equal(t, []string{"timestamp", "logsource", "host", "program", "severity", "facility", "kubernetes"}, keys[:7], "the syslog_cee wrapper comes first")
	hosts := 0
	for _, k := range keys {
		if k == "host" {
			hosts++
		}
	}
	kube := e.f["kubernetes"].(map[string]any)
	labels := kube["labels"].(map[string]any)
	require.Regexp(t, podRe, kube["pod_name"])
	require.Regexp(t, `^wikikube-worker\d+\.(eqiad|codfw)\.wmnet$`, kube["host"])
	require.Equal(t, kube["pod_name"], e.str("logsource"))
	require.Equal(t, kube["pod_name"], e.str("host"))
	require.Equal(t, kube["namespace_name"], labels["deployment"])
	require.True(t, strings.HasPrefix(kube["pod_name"].(string), labels["deployment"].(string)+"."+e.topic[len("k8s-mw-"):]+"."+labels["release"].(string)+"-"), "pod name, topic (by DC) and labels agree")
	require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, e.str("reqId"))
	require.Contains(t, []string{"err", "warning"}, e.str("severity"))
	require.Regexp(t, `^kube-mw-(web|api-ext|api-int|parsoid|jobrunner|pretrain|pretrain-canary|pretrain-jobrunner)$`, e.str("servergroup"))
	pretrain := strings.HasPrefix(e.str("servergroup"), "kube-mw-pretrain")
	require.Equal(t, pretrain, labels["deployment"] == "mw-pretrain", "servergroup and namespace agree on the scope")
	wantSG := "kube-" + labels["deployment"].(string)
	if labels["release"] != "main" {
		wantSG += "-" + labels["release"].(string)
	}
	require.Equal(t, wantSG, e.str("servergroup"), "php.servergroup = kube-<deployment>[-<release>]")
	if strings.HasSuffix(e.str("servergroup"), "jobrunner") {
		require.Equal(t, "/rpc/RunSingleJob.php", e.str("url"))
		require.Equal(t, "POST", e.str("http_method"))
		require.Regexp(t, `^mw-(pretrain-)?jobrunner\.discovery\.wmnet$`, e.str("server"))
	}
	require.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$`, e.str("timestamp"))

	if e.str("caught_by") == "php-wmerrors" {
		require.Equal(t, 1, hosts, "php-wmerrors JSON has no host of its own")
		require.ElementsMatch(t, append(ref.sampleKeys(t, 3), "severity", "kubernetes"), keys, "the php-wmerrors sample's keys, plus the k8s wrapper's")
		require.NotContains(t, keys, "wiki", "php-wmerrors knows no wiki")
		require.NotContains(t, keys, "mwversion")
		require.Equal(t, "php8.1-fpm", e.str("program"))
		require.Equal(t, "daemon", e.str("facility"))
		require.Equal(t, "exception", e.str("channel"))
		require.Regexp(t, `^/srv/mediawiki/php-1\.47\.0-(wmf\.\d+|alpha)/.*:\d+$`, e.f["exception"].(map[string]any)["file"])
		require.True(t, strings.HasPrefix(e.str("message"), "["+e.str("reqId")+"] PHP Fatal error: "))
		require.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`, e.str("@timestamp"))
		return "fatal"
	}
	require.Equal(t, 2, hosts, "the syslog_cee splice writes host twice")
	require.Equal(t, "mediawiki", e.str("program"))
	require.Equal(t, "user", e.str("facility"))
	require.EqualValues(t, 1, e.f["@version"])
	require.Equal(t, "mediawiki", e.str("type"))
	require.Equal(t, map[string]string{"err": "ERROR", "warning": "WARNING"}[e.str("severity")], e.str("level"))
	require.EqualValues(t, map[string]float64{"ERROR": 400, "WARNING": 300}[e.str("level")], e.f["monolog_level"])
	require.Regexp(t, `^s[1-8]$`, e.str("shard"))
	require.Regexp(t, `^[a-z0-9_]+$`, e.str("wiki"))
	require.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$`, e.str("@timestamp"))
	require.NotContains(t, e.str("normalized_message"), e.str("reqId"))
	require.LessOrEqual(t, len(e.str("normalized_message")), 255)
	if pretrain {
		require.Equal(t, "1.47.0-alpha", e.str("mwversion"), "wmf/next logs master's version")
	} else {
		require.Regexp(t, `^1\.47\.0-wmf\.\d+$`, e.str("mwversion"))
	}
	if exc, ok := e.f["exception"].(map[string]any); ok {
		require.Subset(t, mapKeys(exc), []string{"class", "message", "code", "file", "trace"})
		require.Regexp(t, `^/srv/mediawiki/php-`+regexp.QuoteMeta(e.str("mwversion"))+`/.*:\d+$`, exc["file"], "the file path carries the logged version")
		require.Regexp(t, `^from /srv/mediawiki/php-[^/]+/.*\(\d+\)\n#0 `, exc["trace"])
		require.Regexp(t, `\n#\d+ \{main\}$`, exc["trace"])
	}
	if e.f["exception_url"] != nil {
		require.Subset(t, keys, ref.sampleKeys(t, 1))
		prefix := "[" + e.str("reqId") + "] " + e.str("url") + "   "
		require.True(t, strings.HasPrefix(e.str("message"), prefix), e.str("message"))
		require.True(t, strings.HasPrefix(e.str("normalized_message"), "[{reqId}] {exception_url}   "))
		// normalized_message is the same text, cut at 255 bytes.
		require.True(t, strings.HasPrefix(strings.TrimPrefix(e.str("message"), prefix), strings.TrimPrefix(e.str("normalized_message"), "[{reqId}] {exception_url}   ")))
		require.Equal(t, e.str("url"), e.str("exception_url"))
		require.Contains(t, []string{"mwe_handler", "entrypoint", "other"}, e.str("caught_by"))
		return "exception"
	}
	require.Subset(t, keys, slices.DeleteFunc(ref.sampleKeys(t, 0), func(k string) bool { return strings.HasPrefix(k, "memcached-") }))
	if e.str("channel") == "memcached" {
		require.Subset(t, keys, ref.sampleKeys(t, 0), "memcached errors carry their context keys")
		require.Contains(t, e.str("message"), e.str("memcached-key"))
	}
	return "log"
}

// TestErrorShapes renders every error of the catalogue and every injected
// one, on the train and on mw-pretrain, through each entry point, and checks
// them against the real samples.
func TestErrorShapes(t *testing.T) {
	ref := newShapeRef(t)
	p, err := newPlan(Config{Scenario: "quiet", Seed: 9}, testMap(t))
	require.NoError(t, err)
	g := newGenerator(p, func(context.Context, []Record) error { return nil }, realClock{})
	defs := append(backgroundCatalogue(), newPretrainRegressionError(), newSpilloverS3Error(), newSpilloverJobError(),
		newTrainRegressionError(), newFleetDBError(), newLeakError(), newWikiAnomalyError())
	require.GreaterOrEqual(t, len(defs), 20+7)
	shapes := map[string]int{}
	channels := map[string]bool{}
	for _, d := range defs {
		channels[d.channel] = true
		for _, wiki := range []string{"enwiki", "testwiki", "frwiktionary"} {
			for _, kind := range []int{kindPageview, kindAPI, kindREST, kindLoad} {
				for _, trainJob := range []bool{false, true} {
					name := fmt.Sprintf("%s/%s/%d/%v", d.id, wiki, kind, trainJob)
					var inc *plannedIncident
					if trainJob {
						inc = &plannedIncident{onTrainJobrs: true}
					}
					e := synthError(t, g, d, wiki, kind, inc)
					shape := ref.check(t, e)
					shapes[shape]++
					require.Equal(t, d.channel, e.str("channel"), name)
					require.Equal(t, d.normalized, e.str("normalized_message"), name)
					if d.fatal {
						continue
					}
					require.Equal(t, wiki, e.str("wiki"), name)
					if d.class != "" {
						exc := e.f["exception"].(map[string]any)
						require.Equal(t, d.class, exc["class"], name)
						require.True(t, strings.HasSuffix(strings.Split(exc["file"].(string), ":")[0], "/"+d.file), name)
					}
					pretrainServed := e.str("servergroup") != "" && strings.HasPrefix(e.str("servergroup"), "kube-mw-pretrain")
					switch {
					case wiki != "testwiki":
						require.False(t, pretrainServed, name)
					case d.role == roleJob && trainJob:
						require.Equal(t, "kube-mw-jobrunner", e.str("servergroup"), "%s: testwiki job on a train jobrunner", name)
						require.Equal(t, "1.47.0-wmf.16", e.str("mwversion"), "%s: with the train's version", name)
					default:
						require.True(t, pretrainServed, name)
					}
				}
			}
		}
	}
	require.Positive(t, shapes["fatal"])
	require.Positive(t, shapes["exception"])
	require.Positive(t, shapes["log"])
	for _, ch := range []string{"exception", "error", "memcached", "DBQuery", "DBReplication", "JobExecutor", "ParserCache", "CentralAuth", "ExternalStore", "session"} {
		require.True(t, channels[ch], ch)
	}
}

// synthError renders def for a request on wiki (testwiki is served by
// mw-pretrain) of the given kind.
func synthError(t *testing.T, g *generator, def *errorDef, wiki string, kind int, inc *plannedIncident) errEvent {
	t.Helper()
	id := g.p.wikis.ByNameString(wiki)
	require.NotZero(t, id, wiki)
	r := &request{t: g.p.start + int64(time.Minute), w: &g.wikis[id], pretrain: wiki == "testwiki", kind: &g.kinds[kind], dc: 1}
	r.method = r.kind.method
	r.dep = r.kind.dep
	if r.pretrain {
		r.dep = depPretrainMain
	}
	r.pod = &g.deps[r.dep].pods[r.dc][0]
	r.reqID = appendUUID(nil, g.rng.Uint64(), g.rng.Uint64())
	g.buildURL(r)
	g.responseShape(r, 0)
	g.queueError(r, &errEmit{def: def, inc: inc})
	require.Len(t, g.pending, 1)
	pr := g.pending.pop()
	n := len(pr.buf) - pr.keyLen
	raw := bytes.Clone(pr.buf[:n])
	require.True(t, json.Valid(raw), "%s", raw)
	var f map[string]any
	require.NoError(t, json.Unmarshal(raw, &f))
	e := errEvent{topic: g.cfg.Topics.ErrorTopics[pr.dc], time: time.Unix(0, pr.t), raw: raw, f: f}
	require.Equal(t, string(pr.buf[n:]), e.str("reqId"), "key = reqId")
	return e
}

// TestErrorRecordShape checks the error events of a whole quiet run.
func TestErrorRecordShape(t *testing.T) {
	ref := newShapeRef(t)
	c := collect(t, Config{Scenario: "quiet", Seed: 1, Rate: 40}, withErrors)
	require.NotEmpty(t, c.errs)
	for _, e := range c.errs {
		ref.check(t, e)
		// quiet: testwiki is on mw-pretrain, every other wiki on the train.
		require.Equal(t, e.str("wiki") == "testwiki", strings.HasPrefix(e.str("servergroup"), "kube-mw-pretrain"), "%s", e.raw)
	}
	// Error volume: a few per 10k requests.
	ratio := float64(len(c.errs)) / float64(c.accessCount)
	require.InDelta(t, 3.8e-4, ratio, 1.2e-4, "errors per request")
}

func mapKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func readSamples(t *testing.T) [][]byte {
	t.Helper()
	b, err := os.ReadFile("testdata/mediawiki-log-events.kafka-input.jsonl")
	require.NoError(t, err)
	var out [][]byte
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		out = append(out, []byte(l))
	}
	require.Len(t, out, 5)
	return out
}

// TestAccessRecordShape checks access-log records against the httpd
// logformat's keys (flat) and rsyslog's nested envelope.
func TestAccessRecordShape(t *testing.T) {
	c := collect(t, Config{Scenario: "quiet", Seed: 2, Rate: 40, Duration: 40 * time.Minute}, withAccess)
	raw, err := os.ReadFile("testdata/httpd-accesslog_ecs_1.7.0.yaml")
	require.NoError(t, err)
	var format map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &format))
	require.Contains(t, format, "labels.handler")
	require.NotEmpty(t, c.samples)
	for _, s := range c.samples {
		var f map[string]any
		require.NoError(t, json.Unmarshal(s, &f))
		for k := range format {
			if _, ok := f[k]; ok {
				continue
			}
			// Fields the rsyslog envelope carries nested instead.
			v, ok := lookup(f, strings.Split(k, "."))
			require.True(t, ok, "access record lacks %s: %s", k, s)
			if k == "ecs.version" {
				require.Equal(t, "1.11.0", v)
			}
		}
		for _, k := range []string{"http.response.status_code", "event.duration", "http.response.bytes"} {
			require.IsType(t, float64(0), f[k], "%s is a number", k)
		}
		require.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$`, f["timestamp"])
		labels := f["labels"].(map[string]any)
		orch := f["orchestrator"].(map[string]any)
		require.Equal(t, "kubernetes", orch["type"])
		require.Equal(t, labels["deployment"], orch["namespace"])
		require.Equal(t, f["host"].(map[string]any)["name"], orch["resource"].(map[string]any)["name"])
		require.Equal(t, "apache2", f["service"].(map[string]any)["type"])
		require.Equal(t, f["url.full"], "http://"+f["url.domain"].(string)+f["url.path"].(string)+f["url.query"].(string))
		require.Equal(t, f["http.request.headers.x_forwarded_for"], f["http.request.headers.x_client_ip"])
	}
	// Scope by deployment, status mix and testwiki's real rate.
	var testwiki, pretrainOther, fivexx int
	deps := map[string]int{}
	for _, a := range c.access {
		deps[a.deployment+"/"+a.release]++
		if a.status >= 500 {
			fivexx++
		}
		if a.deployment == "mw-pretrain" {
			if a.domain != "test.wikipedia.org" {
				pretrainOther++
			}
			continue
		}
		require.NotEqual(t, "test.wikipedia.org", a.domain, "testwiki is served by mw-pretrain only")
	}
	for _, a := range c.access {
		if a.domain == "test.wikipedia.org" {
			testwiki++
		}
	}
	require.Zero(t, pretrainOther, "no leak in quiet")
	hours := c.gt.End.Sub(c.gt.Start).Hours()
	require.InDelta(t, 2*3600*hours*meanDailyFactor(c.gt.Start, c.gt.End), float64(testwiki), 600, "testwiki at its real ~2/s")
	require.InDelta(t, 0.001, float64(fivexx)/float64(len(c.access)), 0.0005, "5xx about 0.1%%")
	for _, d := range []string{"mw-web/main", "mw-api-ext/main", "mw-api-int/main", "mw-parsoid/main", "mw-pretrain/main", "mw-pretrain/canary"} {
		require.Positive(t, deps[d], d)
	}
	require.InDelta(t, 0.5, float64(deps["mw-pretrain/canary"])/float64(deps["mw-pretrain/main"]), 0.1, "canary: 1 replica against main's 2")
}

func lookup(m map[string]any, path []string) (any, bool) {
	v, ok := m[path[0]]
	if !ok || len(path) == 1 {
		return v, ok
	}
	sub, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	return lookup(sub, path[1:])
}

// TestRollouts: each Pretrain deploy renews mw-pretrain's ReplicaSet hash,
// each train deploy the train deployments', and nothing else does.
func TestRollouts(t *testing.T) {
	c := collect(t, Config{Scenario: "quiet", Seed: 5, Rate: 10}, withAccess)
	hashOf := func(pod string) string {
		parts := strings.Split(pod, "-")
		return parts[len(parts)-2]
	}
	type seg struct{ pretrain, web map[string]bool }
	bounds := []time.Time{c.gt.Start}
	for _, d := range c.gt.Deploys {
		bounds = append(bounds, d.At)
	}
	segs := make([]seg, len(bounds))
	for i := range segs {
		segs[i] = seg{map[string]bool{}, map[string]bool{}}
	}
	for _, a := range c.access {
		i := len(bounds) - 1
		for i > 0 && a.time.Before(bounds[i]) {
			i--
		}
		switch {
		case a.deployment == "mw-pretrain" && a.release == "main":
			segs[i].pretrain[hashOf(a.pod)] = true
		case a.deployment == "mw-web":
			segs[i].web[hashOf(a.pod)] = true
		}
	}
	require.Len(t, c.gt.Deploys, 3)
	for i, s := range segs {
		require.Len(t, s.pretrain, 1, "one mw-pretrain ReplicaSet in segment %d", i)
		require.Len(t, s.web, 1, "one mw-web ReplicaSet in segment %d", i)
	}
	for i, d := range c.gt.Deploys {
		before, after := segs[i], segs[i+1]
		require.Equal(t, d.Scope == "pretrain", !sameSet(before.pretrain, after.pretrain), "deploy %d %s: mw-pretrain rollout", i, d.Scope)
		require.Equal(t, d.Scope == "train", !sameSet(before.web, after.web), "deploy %d %s: mw-web rollout", i, d.Scope)
	}
}

func sameSet(a, b map[string]bool) bool {
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return len(a) == len(b)
}

// fakeClock advances only when slept on.
type fakeClock struct {
	now    time.Time
	slept  time.Duration
	sleeps int
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.now = c.now.Add(d)
	c.slept += d
	c.sleeps++
	return ctx.Err()
}

func TestPacing(t *testing.T) {
	m := testMap(t)
	t.Run("fake clock", func(t *testing.T) {
		for _, speed := range []float64{0.5, 2, 60} {
			clk := &fakeClock{now: time.Unix(1e9, 0)}
			var lastWall time.Time
			var simStart time.Time
			sink := func(_ context.Context, batch []Record) error {
				if simStart.IsZero() {
					simStart = batch[0].Time
				}
				// A record is never handed over before its paced wall time.
				due := clk.now.Sub(time.Unix(1e9, 0))
				sim := batch[len(batch)-1].Time.Sub(simStart)
				require.LessOrEqual(t, float64(sim)/speed, float64(due+time.Duration(float64(step)/speed)+minSleep))
				lastWall = clk.now
				return nil
			}
			cfg := Config{Scenario: "quiet", Duration: 10 * time.Second, Speed: speed, Rate: 50}
			_, err := run(context.Background(), cfg, m, sink, clk)
			require.NoError(t, err)
			want := time.Duration(float64(10*time.Second) / speed)
			require.InDelta(t, float64(want), float64(clk.slept), float64(minSleep), "speed %v", speed)
			require.False(t, lastWall.IsZero())
		}
	})
	t.Run("fast replay does not sleep", func(t *testing.T) {
		clk := &fakeClock{now: time.Unix(1e9, 0)}
		_, err := run(context.Background(), Config{Scenario: "quiet", Duration: time.Minute, Rate: 50}, m, func(context.Context, []Record) error { return nil }, clk)
		require.NoError(t, err)
		require.Zero(t, clk.sleeps)
	})
	t.Run("wall clock", func(t *testing.T) {
		start := time.Now()
		n := 0
		_, err := Run(context.Background(), Config{Scenario: "quiet", Duration: 3 * time.Second, Speed: 20, Rate: 100}, m, func(_ context.Context, b []Record) error {
			n += len(b)
			return nil
		})
		require.NoError(t, err)
		elapsed := time.Since(start)
		require.GreaterOrEqual(t, elapsed, 140*time.Millisecond, "3 s at speed 20 takes 150 ms")
		require.Less(t, elapsed, 2*time.Second)
		require.Positive(t, n)
	})
	t.Run("cancel while paced", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		start := time.Now()
		calls := 0
		gt, err := Run(ctx, Config{Scenario: "quiet", Speed: 1, Rate: 100}, m, func(context.Context, []Record) error {
			calls++
			if calls == 2 {
				cancel()
			}
			return nil
		})
		require.ErrorIs(t, err, context.Canceled)
		require.Less(t, time.Since(start), 2*time.Second)
		require.Equal(t, "quiet", gt.Scenario, "ground truth comes back on cancel too")
	})
}

func TestSinkError(t *testing.T) {
	boom := errors.New("boom")
	calls := 0
	_, err := Run(context.Background(), Config{Scenario: "quiet", Duration: time.Minute, BatchSize: 10}, testMap(t), func(context.Context, []Record) error {
		calls++
		return boom
	})
	require.ErrorIs(t, err, boom)
	require.Equal(t, 1, calls, "the first failure stops the run")
}

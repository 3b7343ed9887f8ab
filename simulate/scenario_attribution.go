package simulate

import (
	"fmt"
	"slices"
	"time"

	"github.com/wikimedia/pretrain-detector/wikimap"
)

// Incident kinds of confounders: what happened, for the record, but no
// finding kind. A Pretrain-blaming finding during one is a false blame.
const (
	KindSectionIncident = "section-incident" // infrastructure on one DB section
	KindNoise           = "noise"            // one looping request, developers' debug traffic
)

// attributionScenarios are the confounders that look like Pretrain's fault
// by timing and place but are not, and the true positives that look like
// something else: each exercises one rule of attribution.
func attributionScenarios() []scenarioDef {
	return []scenarioDef{
		{
			info: ScenarioInfo{Name: "s3-db-incident", DefaultDuration: 100 * time.Minute,
				Description: "Code before place (confounder): an existing database error (deadlock) rises on every s3 wiki, testwiki's Pretrain-served requests included, for 10 minutes, 15 minutes after a Pretrain deploy. An infrastructure incident on testwiki's section: nothing may blame Pretrain."},
			start: tuesdayNoon().Add(-3 * time.Hour), rate: DefaultRate,
			build: func(b *builder) error {
				d := b.deployUnderTest()
				def, err := b.background("rdbms-deadlock")
				if err != nil {
					return err
				}
				onset := d.At.Add(15 * time.Minute)
				b.incident(incidentSpec{kind: KindSectionIncident, def: def, wikis: b.p.wikis.InSection("s3"), scope: matchAny,
					p: 0.02, onset: onset, end: onset.Add(10 * time.Minute), deploy: d})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "s3-db-outage", DefaultDuration: 100 * time.Minute,
				Description: "Code before place (confounder): a NEW database-connection error on every s3 wiki during an outage after a Pretrain deploy, hitting Pretrain-served and train-served requests at the same per-request rate."},
			start: tuesdayNoon().Add(2 * time.Hour), rate: DefaultRate,
			build: func(b *builder) error {
				d := b.deployUnderTest()
				onset := d.At.Add(7 * time.Minute)
				b.incident(incidentSpec{kind: KindSectionIncident, def: newSectionDBConnError(), wikis: b.p.wikis.InSection("s3"), scope: matchAny,
					p: 0.03, onset: onset, end: onset.Add(12 * time.Minute), deploy: d})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "pretrain-request-loop", DefaultDuration: 100 * time.Minute,
				Description: "Distinct requests (confounder): after a Pretrain deploy, one testwiki request logs an existing PHP warning 40 times in a loop, and a few minutes later another one 25 times: two requests, not a regression."},
			start: tuesdayNoon(), rate: DefaultRate,
			build: func(b *builder) error {
				d := b.deployUnderTest()
				def, err := b.background("php-warning-title")
				if err != nil {
					return err
				}
				tw := []wikimap.ID{b.p.testwiki}
				on1 := d.At.Add(4 * time.Minute)
				b.incident(incidentSpec{kind: KindNoise, def: def, wikis: tw, scope: matchPretrain, p: 0.5, repeat: 40, maxHits: 1,
					onset: on1, end: on1.Add(time.Minute), deploy: d})
				on2 := d.At.Add(9 * time.Minute)
				b.incident(incidentSpec{kind: KindNoise, def: newPretrainRegressionError(), wikis: tw, scope: matchPretrain, p: 0.5, repeat: 25, maxHits: 1,
					onset: on2, end: on2.Add(time.Minute), deploy: d})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "pretrain-regression-loops", DefaultDuration: 100 * time.Minute,
				Description: "Distinct requests (true positive): after a Pretrain deploy, about 2 testwiki requests a minute fail with a new error that each logs 6 times."},
			start: wednesdayNoon(), rate: DefaultRate,
			build: func(b *builder) error {
				d := b.deployUnderTest()
				onset := d.At.Add(3 * time.Minute)
				b.incident(incidentSpec{kind: "pretrain-regression", def: newPretrainLoopError(), wikis: []wikimap.ID{b.p.testwiki}, scope: matchPretrain,
					perMinute: 2, repeat: 6, onset: onset, end: onset.Add(25 * time.Minute), deploy: d})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "debug-release", DefaultDuration: 100 * time.Minute,
				Description: "The debug release (confounder): developers send a share of enwiki and dewiki requests to mw-pretrain's debug release with the debug header after a Pretrain deploy, and some of them fail with Pretrain's new code. Not a leak, and in no wiki's statistics."},
			start: tuesdayNoon(), rate: DefaultRate,
			build: func(b *builder) error {
				d := b.deployUnderTest()
				onset := d.At.Add(2 * time.Minute)
				var ws []wikimap.ID
				for _, n := range []string{"enwiki", "dewiki"} {
					if id := b.p.wikis.ByNameString(n); id != 0 {
						ws = append(ws, id)
					}
				}
				if len(ws) == 0 {
					return fmt.Errorf("debug-release: the wiki map has neither enwiki nor dewiki")
				}
				b.incident(incidentSpec{kind: KindNoise, def: newPretrainRegressionError(), wikis: ws, scope: matchPretrain,
					debug: true, debugShare: 0.004, p: 0.2, onset: onset, end: onset.Add(45 * time.Minute), deploy: d})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "spillover-existing", DefaultDuration: 100 * time.Minute,
				Description: "Spillover through an existing fingerprint (true positive): after a Pretrain deploy an existing cache error goes from a few an hour to about one every two seconds on 150 train-served s3 wikis, and not on testwiki's Pretrain-served requests."},
			start: wednesdayNoon().Add(-2 * time.Hour), rate: DefaultRate,
			build: func(b *builder) error {
				d := b.deployUnderTest()
				def, err := b.background("memcached-timeout")
				if err != nil {
					return err
				}
				ws := b.busiest(b.without(b.p.wikis.InSection("s3"), b.p.testwiki), 150)
				onset := d.At.Add(6 * time.Minute)
				b.incident(incidentSpec{kind: "shared-data-spillover", def: def, wikis: ws, scope: matchTrain, perMinute: 30, pMax: 0.3,
					onset: onset, end: onset.Add(35 * time.Minute), deploy: d})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "cache-degradation", DefaultDuration: 100 * time.Minute,
				Description: "Spillover through an existing fingerprint (confounder): after a Pretrain deploy the same existing cache error rises tenfold on every wiki, Pretrain-served requests included: a cache problem, nobody's code."},
			start: tuesdayNoon().Add(-4 * time.Hour), rate: DefaultRate,
			build: func(b *builder) error {
				d := b.deployUnderTest()
				def, err := b.background("memcached-timeout")
				if err != nil {
					return err
				}
				onset := d.At.Add(6 * time.Minute)
				b.incident(incidentSpec{kind: KindFleetIncident, def: def, wikis: b.all(), scope: matchAny, p: 6e-4,
					onset: onset, end: onset.Add(20 * time.Minute), deploy: d})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "spillover-global", DefaultDuration: 100 * time.Minute,
				Description: "Fleet-wide but code-specific (true positive): after a Pretrain deploy a NEW CentralAuth error (global account data written by Pretrain code) hits 1% of train-served requests on every wiki of every section, and none of testwiki's Pretrain-served ones."},
			start: tuesdayNoon(), rate: DefaultRate,
			build: func(b *builder) error {
				d := b.deployUnderTest()
				onset := d.At.Add(5 * time.Minute)
				b.incident(incidentSpec{kind: "shared-data-spillover", def: newCentralAuthSpilloverError(), wikis: b.without(b.all(), b.p.testwiki), scope: matchTrain,
					p: 0.01, onset: onset, end: onset.Add(30 * time.Minute), deploy: d})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "train-then-pretrain", DefaultDuration: 110 * time.Minute,
				Description: "Versions decide (true positive for the train): the group1 train deploy, a Pretrain deploy 10 minutes later, then a new database query error carried by group1's new branch on its s3 wikis only: concentrated on s3 and after a Pretrain deploy, yet the train's."},
			start: wednesdayNoon(), rate: DefaultRate,
			build: func(b *builder) error {
				b.pretrainDeploy(b.jittered(10 * time.Minute))
				td := b.trainDeploy(b.jittered(50*time.Minute), "group1")
				b.pretrainDeploy(td.At.Add(10 * time.Minute))
				var ws []wikimap.ID
				for _, id := range b.p.wikis.InGroup("group1") {
					if b.p.wikis.Wiki(id).Section == "s3" {
						ws = append(ws, id)
					}
				}
				onset := td.At.Add(13 * time.Minute)
				b.incident(incidentSpec{kind: "train-regression", def: newTrainS3QueryError(), wikis: ws, scope: matchTrain,
					p: 0.01, onset: onset, end: onset.Add(30 * time.Minute), deploy: td})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "pretrain-regression-redeploy", DefaultDuration: 110 * time.Minute,
				Description: "One incident, one finding: a new testwiki error after a Pretrain deploy, a pause, the next Pretrain deploy (which does not fix it), and the error again. One finding, naming the deploy that brought it."},
			start: tuesdayNoon().Add(-2 * time.Hour), rate: DefaultRate,
			build: func(b *builder) error {
				d := b.deployUnderTest()
				tw := []wikimap.ID{b.p.testwiki}
				def := newPretrainRegressionError()
				onset := d.At.Add(2 * time.Minute)
				b.pretrainDeploy(d.At.Add(16 * time.Minute))
				b.incident(incidentSpec{kind: "pretrain-regression", def: def, wikis: tw, scope: matchPretrain, perMinute: 6,
					onset: onset, end: d.At.Add(35 * time.Minute), deploy: d,
					pause: [2]time.Time{d.At.Add(12 * time.Minute), d.At.Add(20 * time.Minute)}})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "wiki-5xx", DefaultDuration: 150 * time.Minute,
				Description: "Wiki anomaly from the access log (true positive): a busy medium wiki's 5xx share goes from about 0.1% to 5% and its request timeouts twentyfold, with no deploy within an hour."},
			start: tuesdayNoon().Add(3 * time.Hour), rate: DefaultRate,
			build: func(b *builder) error {
				b.pretrainDeploy(b.jittered(15 * time.Minute))
				ws := b.busiest(b.medium(), 1)
				if len(ws) == 0 {
					return fmt.Errorf("wiki-5xx: no medium wiki in the wiki map")
				}
				def, err := b.background("request-timeout")
				if err != nil {
					return err
				}
				onset := b.start.Add(95 * time.Minute)
				b.incident(incidentSpec{kind: "wiki-anomaly", wikis: ws, scope: matchTrain, p: 0.05, status: 503,
					onset: onset, end: onset.Add(40 * time.Minute)})
				b.incident(incidentSpec{kind: "wiki-anomaly", def: def, wikis: ws, scope: matchTrain, p: 20 * def.rate,
					onset: onset, end: onset.Add(40 * time.Minute)})
				return nil
			},
		},
		{
			info: ScenarioInfo{Name: "placebo-week", DefaultDuration: 7 * 24 * time.Hour,
				Description: "The placebo: seven days with a Pretrain deploy every 30 minutes, ordinary noise, a database incident on a different section every day (s3 included, testwiki's Pretrain-served requests with it), and the train with a regression on each of its three days. No Pretrain-caused incident: every Pretrain-blaming finding is a false blame. Default Rate 20 so it generates in minutes."},
			start: mondayMidnight(), rate: 20,
			build: func(b *builder) error {
				for t := b.start.Add(time.Duration(5+b.rng.IntN(20)) * time.Minute); t.Before(b.end); t = t.Add(30 * time.Minute) {
					b.pretrainDeploy(t)
				}
				sections := []string{"s3", "s1", "s4", "s2", "s3", "s5", "s8"}
				deadlock, err := b.background("rdbms-deadlock")
				if err != nil {
					return err
				}
				for i, day := 0, b.start; day.Before(b.end); i, day = i+1, day.Add(24*time.Hour) {
					at := day.Add(time.Duration(9*60+b.rng.IntN(8*60)) * time.Minute)
					def := deadlock
					if i%2 == 1 {
						def = newSectionDBConnError()
					}
					b.incident(incidentSpec{kind: KindSectionIncident, def: def, wikis: b.p.wikis.InSection(sections[i%len(sections)]), scope: matchAny,
						p: 0.02, onset: at, end: at.Add(time.Duration(8+b.rng.IntN(10)) * time.Minute)})
					group := map[time.Weekday]string{time.Tuesday: "group0", time.Wednesday: "group1", time.Thursday: "group2"}[day.Weekday()]
					if group == "" {
						continue
					}
					td := b.trainDeploy(day.Add(13*time.Hour+b.jitter(15*time.Minute)), group)
					onset := td.At.Add(time.Duration(2+b.rng.IntN(10)) * time.Minute)
					b.incident(incidentSpec{kind: "train-regression", def: newBranchRegressionError(i), wikis: b.p.wikis.InGroup(group), scope: matchTrain,
						p: 0.02, onset: onset, end: onset.Add(40 * time.Minute), deploy: td})
				}
				return nil
			},
		},
	}
}

// busiest returns the n wikis of ids with the most traffic, busiest first.
func (b *builder) busiest(ids []wikimap.ID, n int) []wikimap.ID {
	ids = slices.Clone(ids)
	slices.SortStableFunc(ids, func(x, y wikimap.ID) int {
		wx, wy := b.p.model.weight[x], b.p.model.weight[y]
		switch {
		case wx > wy:
			return -1
		case wx < wy:
			return 1
		}
		return int(x) - int(y)
	})
	return ids[:min(n, len(ids))]
}

// medium returns the open, public, non-test medium wikis outside testwiki's
// section.
func (b *builder) medium() []wikimap.ID {
	var out []wikimap.ID
	for _, w := range b.p.wikis.Wikis() {
		if w.Size == "medium" && !w.Closed && !w.Private && !w.Test && w.Section != "s3" && b.p.model.weight[w.ID] > 0 {
			out = append(out, w.ID)
		}
	}
	return out
}

func newSectionDBConnError() *errorDef {
	return exceptionDef(errorDef{
		id: "injected-section-dbconnection", channel: "exception", class: `Wikimedia\Rdbms\DBConnectionError`, status: 500,
		text: "Cannot access the database: Too many connections (db1166)",
		file: "includes/libs/rdbms/loadbalancer/LoadBalancer.php", line: 1221,
		frames: []string{
			`{root}includes/libs/rdbms/loadbalancer/LoadBalancer.php(1003): Wikimedia\Rdbms\LoadBalancer->reportConnectionError(string)`,
			`{root}includes/libs/rdbms/loadbalancer/LoadBalancer.php(944): Wikimedia\Rdbms\LoadBalancer->getServerConnection(int, string, int)`,
			`{root}includes/libs/rdbms/database/DBConnRef.php(95): Wikimedia\Rdbms\LoadBalancer->getConnectionInternal(int, array, string, int)`,
			`{root}includes/Revision/RevisionStore.php(1502): Wikimedia\Rdbms\DBConnRef->__call(string, array)`,
		},
	})
}

func newPretrainLoopError() *errorDef {
	return exceptionDef(errorDef{
		id: "injected-pretrain-loop", channel: "exception", class: "InvalidArgumentException", status: 500,
		text: `MediaWiki\Title\TitleValue::__construct(): Argument $namespace must be an integer, string given`,
		file: "includes/title/TitleValue.php", line: 88,
		frames: []string{
			`{root}includes/title/TitleValue.php(121): MediaWiki\Title\TitleValue->__construct(string, string)`,
			`{root}includes/recentchanges/ChangesList.php(402): MediaWiki\Title\TitleValue::tryNew(string, string)`,
			`{root}includes/specials/SpecialRecentChanges.php(688): MediaWiki\RecentChanges\ChangesList->recentChangesLine(MediaWiki\RecentChanges\RecentChange)`,
		},
	})
}

func newCentralAuthSpilloverError() *errorDef {
	return logDef(errorDef{
		id: "injected-centralauth-attach", channel: "CentralAuth", class: "",
		text: "Unexpected global user state for attached account: gu_home_db 'testwiki' has no local user row (written by a newer schema)",
		file: "extensions/CentralAuth/includes/User/CentralAuthUser.php", line: 1840,
		frames: []string{
			`{root}extensions/CentralAuth/includes/User/CentralAuthUser.php(1840): MediaWiki\Extension\CentralAuth\User\CentralAuthUser->loadState()`,
			`{root}extensions/CentralAuth/includes/CentralAuthHooks.php(412): MediaWiki\Extension\CentralAuth\User\CentralAuthUser->isAttached()`,
		},
	})
}

func newTrainS3QueryError() *errorDef {
	return logDef(errorDef{
		id: "injected-train-s3-query", channel: "DBQuery", class: `Wikimedia\Rdbms\DBQueryError`, status: 500,
		text: "Error 1146: Table 'linktarget_new' doesn't exist (db1175)\nFunction: MediaWiki\\Linker\\LinkTargetStore::acquireLinkTargetId\nQuery: SELECT  lt_id  FROM `linktarget_new`    WHERE lt_namespace = N AND lt_title = 'X'",
		file: "includes/libs/rdbms/database/Database.php", line: 1198,
		frames: []string{
			`{root}includes/libs/rdbms/database/Database.php(1182): Wikimedia\Rdbms\Database->getQueryException(string, int, string, string)`,
			`{root}includes/linker/LinkTargetStore.php(228): Wikimedia\Rdbms\SelectQueryBuilder->fetchField()`,
		},
	})
}

// newBranchRegressionError is a train regression of branch n: each train
// day brings its own bug, a fingerprint new that day.
func newBranchRegressionError(n int) *errorDef {
	return exceptionDef(errorDef{
		id: fmt.Sprintf("injected-branch-%d-typeerror", n), channel: "exception", class: "TypeError", status: 500,
		text: fmt.Sprintf(`MediaWiki\Page\PageProps::getProperties(): Argument #%d ($titles) must be of type iterable, null given`, n+1),
		file: "includes/page/PageProps.php", line: 102 + n,
		frames: []string{
			`{root}extensions/PageImages/includes/PageImages.php(167): MediaWiki\Page\PageProps->getProperties(null, string)`,
			`{root}includes/Output/OutputPage.php(3170): MediaWiki\HookContainer\HookContainer->run(string, array, array)`,
		},
	})
}

// Package detect decides, from the window's counts and deploy timeline,
// whether code deployed to Pretrain is hurting the wikis. It is a pure
// function of (window, deploy timeline, config, watermark): no I/O and no
// clock, so live runs and replays give the same findings for the same records.
//
// Every bucket that closes behind the watermark is evaluated once, in order.
//
// # Attribution: code before place
//
// Timing (an onset soon after a Pretrain deploy) and place (a shared-data
// channel, errors on the cohort's DB section) never suffice to blame
// Pretrain: a database incident on s3, or a train deploy to group0, produce
// both. What only Pretrain's code explains is harm that depends on which
// code served the request. So every Pretrain-blaming rule runs the code
// test: the exact conditional binomial test of the per-request error rates
// of Pretrain-served traffic (the cohort, testwiki, on the pretrain scope)
// against train-served traffic in the same shared-data scope (the
// train-served wikis of the cohort's DB sections, or of the fingerprint's
// data path). Its verdict is pretrain-worse (P(X ≥ k) under ratio = margin
// at most 0.01: a contained regression), pretrain-spared (P(X ≤ k) under
// ratio = 1/margin at most 0.01: a spillover), code-agnostic (both 95% bounds within a factor of about 3 of
// 1: an infrastructure fault, never a blame) or undetermined (testwiki's
// traffic too thin to tell: nothing is blamed). An error that looks like a
// database fault's (connection, lag, read-only, lock wait, deadlock, by
// class, channel or message) needs the code test at alpha instead of 0.01. Every finding's evidence carries the code test,
// the candidates weighed (the Pretrain deploy, train deploys of the groups
// involved within detect.attribution, section and fleet incidents, each
// with its evidence and whether it fits) and the margin by which the chosen
// cause wins; when no cause wins, no Pretrain-blaming finding is emitted
// and CohortStatus lists the signal as undetermined with its candidates.
//
// Counts are of distinct requests (reqId): the window counts each request
// once among its (wiki, scope)'s erroring requests and once per
// fingerprint, in the bucket of its first line, however many lines and
// buckets it spans (a fixed 1-MiB request set per shard; see the window
// package). Traffic of mw-pretrain's debug release (developers choosing
// Pretrain with the debug header) is in no wiki's counts; status lists it.
//
// # Rules, one per finding kind
//
// pretrain-regression, one finding per cohort (key "cohort"), fed by two
// tests. (a) Rate: after each Pretrain deploy, the cohort's Pretrain-served
// erroring requests are tested against those of the train-served wikis of
// its DB sections (not the whole fleet: a section incident raises both)
// with the exact conditional binomial test run sequentially as a mixture
// likelihood-ratio e-process. The null rate ratio rho0 is the larger of the
// margin and the 90% upper bound of the same ratio before the deploy
// (difference in differences). It fires when E ≥ 1/alpha, in at least
// detect.min_buckets buckets, with the code test pretrain-worse and no
// fleet-wide incident. (b) New fingerprint: a fingerprint first seen after
// the deploy, k distinct Pretrain-served requests on the cohort against m
// occurrences on the train-served wikis of its sections (and Pretrain-served
// ones elsewhere), fires when the code test's P(X ≥ k | k+m) under ratio =
// margin is at most alpha/K (K the new fingerprints tested since the
// deploy), with detect.min_distinct requests in detect.min_buckets buckets.
//
// shared-data-spillover, one finding per shared-data path (key
// "spill:<class>", or "spill:jobrunner"), fed by two tests. (a) New
// fingerprint: first seen within detect.attribution after a Pretrain
// deploy, served by TRAIN code, with a shared-data class (channel or frame)
// or landing on the cohort through the train jobrunners. Its onset must be
// significant (absent for the pre-period and seen n times since: P(all n
// after the deploy) = (post/(pre+post))^n ≤ alpha/K); where the path reaches
// only some wikis (the cohort's DB section, its Wikibase repo's clients)
// the errors must concentrate there beyond their request share; and the
// code test must say pretrain-spared (except through the jobrunners, where
// only train code reads the cohort's jobs). An error carried only by
// versions a train deploy brought within detect.attribution before its
// onset is train-regression's, whatever the order of the deploys; one
// carried by old and new versions is undetermined. (b) Existing
// fingerprint: a shared-data fingerprint first seen before the Pretrain
// deploy and seen at least 10 times since is tested once a minute: its
// fleet-wide rate per request after the deploy against before (own
// history, rate ratio > margin), then per DB section the section's
// before/after change against the 90% upper bound of the other sections'
// change times the margin (difference in differences, exact conditional
// test, level alpha/K), and the code test on the section (pretrain-spared);
// no train deploy of a group with wikis there within detect.attribution
// may fit (then it is undetermined). A core-DB fingerprint is tested only
// on the cohort's sections. Both tests are withheld while a section
// incident on the wikis concerned, or a fleet-wide incident, is more than
// this fingerprint (it makes less than half of the incident's erroring
// requests): a code-specific error that makes most of a fleet-wide rise is
// the spillover itself, even when it raises every section.
//
// pretrain-leak. Pretrain-scope requests or errors for a wiki outside the
// cohort, at least detect.leak_min_events of them within
// detect.anomaly_window, through the main, canary or jobrunner releases:
// the debug release serves any wiki by design and is not counted.
//
// train-regression. A fingerprint first seen after a train deploy of a
// group, carried only by the versions deploys brought within
// detect.attribution before its onset, on train-scope wikis. The p-value
// is twice the smaller of P(all n in the deployed groups) = s^n (s their
// request share) and the onset test. It is the train's, never Pretrain's.
//
// wiki-anomaly, one finding per wiki, fed by two tests. (a) Errors: per
// wiki (train scope, outside the cohort) an e-detector (the e-process with
// its log-likelihood floored at 0, a CUSUM of the same increments) of the
// wiki's erroring requests against all other wikis', with rho0 from the
// wiki's own trailing baseline: the 99% upper bound of the ratio over the
// counts the baseline's EWMA (half-life 1 h) weighs. (b) 5xx: a CUSUM of
// the wiki's 5xx responses (access log) against its own baseline share (the
// 99% upper bound over the EWMA's counts, at least margin × its point
// estimate and 0.01%), for jumps of 3× to 50×; an excursion that has not
// fired within an hour starts over (its baseline, frozen meanwhile, is stale). The error test's threshold
// keeps expected false alarms over a week across all wikis at most alpha
// (Bonferroni over wikis and buckets, Lorden's bound); the 5xx test's at
// most one (it blames nobody, and a 5xx share that matters jumps by an order
// of magnitude). Suppressed when a train deploy of
// the wiki's group within detect.attribution explains it, during a
// fleet-wide incident or a section incident the wiki makes less than half
// of (the excursion is reset, not postponed), or when the fingerprints of
// firing findings make at least half of its errors since the onset.
//
// Section and fleet incidents. Per DB section, the train-served erroring
// requests and 5xx of the last 30 s, and of the last 2 minutes (a small
// section's incident is a few errors a minute), against the median rate of
// the section's calm 30-s windows over the last hour: 3× and significant
// (Poisson excess p ≤ 1e-6) is a section incident, until 5 minutes calm; CohortStatus shows
// it with, on the cohort's section, the code test of the cohort against the
// section since it began (code-agnostic: both scopes rose alike). Three
// sections at once is a fleet-wide incident. Neither is ever a Pretrain
// blame; both are candidates in every attribution.
//
// Guards: a finding needs its signal in detect.min_buckets buckets and
// detect.min_distinct distinct requests (one request or one crawler must
// not make a finding); without the pre-period a fingerprint cannot be
// called new and the state is "insufficient evidence", not OK.
//
// Lifecycle: pending (a signal, not yet significant or guarded) → firing →
// resolved when no supporting evidence arrived for detect.resolve_after
// (hysteresis: firing needs the full threshold, staying firing only needs
// evidence). A firing finding keeps the evidence and the deploy it fired
// on, so a later Pretrain deploy does not rewrite what brought it; one that
// resolved less than detect.resolve_after ago and fires again reopens with
// its identity and first detection time. Identity is kind + key, hashed,
// stable across restarts. Summaries and evidence quote the statistic that
// made the finding fire, never one that did not apply.
package detect

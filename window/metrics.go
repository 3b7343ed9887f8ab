package window

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/wikimedia/pretrain-detector/event"
)

const (
	namespace = "detector"
	subsystem = "window"
)

// collector exposes the Store's counters at scrape time. The hot path only
// adds to atomics once per batch; nothing Prometheus runs per event.
type collector struct {
	s *Store

	added, dropped, entries, bytes, evictions, watermark, newest       *prometheus.Desc
	ringBytes, pending, deployKeys                                     *prometheus.Desc
	cacheBytes, cacheMax, cacheEntries, cacheGets, cacheSets, cacheMis *prometheus.Desc
	cacheCollisions                                                    *prometheus.Desc
	requests, errors, lastDeploy                                       *prometheus.Desc
}

func newCollector(s *Store) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, name), help, labels, nil)
	}
	return &collector{
		s:               s,
		added:           d("events_added_total", "Events counted into the window, by kind.", "kind"),
		dropped:         d("events_dropped_total", "Events not counted, by reason: too_old (before the ring), too_new (more than the ring length after the newest event), invalid.", "reason"),
		entries:         d("fingerprint_catalogue_entries", "Fingerprints in the catalogue."),
		bytes:           d("fingerprint_catalogue_bytes", "Heap bytes accounted to the fingerprint catalogue."),
		evictions:       d("fingerprint_evictions_total", "Fingerprints evicted from the catalogue, least recently seen first."),
		watermark:       d("watermark_timestamp_seconds", "Newest event time minus the allowed lateness, as a Unix time."),
		newest:          d("newest_event_timestamp_seconds", "Time of the newest event counted, as a Unix time."),
		ringBytes:       d("ring_bytes", "Bytes of the per-wiki bucket counters."),
		pending:         d("fingerprint_pending_keys", "Fingerprint counts of open buckets buffered before fastcache."),
		deployKeys:      d("deploy_keys", "Versions and rollouts tracked by the deploy timeline."),
		cacheBytes:      d("fastcache_bytes", "Bytes fastcache holds for fingerprint counts."),
		cacheMax:        d("fastcache_max_bytes", "Capacity of fastcache in bytes."),
		cacheEntries:    d("fastcache_entries", "Entries in fastcache."),
		cacheGets:       d("fastcache_get_calls_total", "fastcache Get calls."),
		cacheSets:       d("fastcache_set_calls_total", "fastcache Set calls."),
		cacheMis:        d("fastcache_misses_total", "fastcache misses; rising while fastcache_bytes is near fastcache_max_bytes means eviction."),
		cacheCollisions: d("fastcache_collisions_total", "fastcache hash collisions."),
		// Per DB section and scope, so a dashboard can show where requests
		// and errors are without a per-wiki series: at most maxSections × 2.
		requests: d("requests_total", "Request events counted into the window, by the wiki's DB section and the scope (pretrain, train) that served them.", "section", "scope"),
		errors:   d("errors_total", "Error events counted into the window, by the wiki's DB section and the scope (pretrain, train) that logged them.", "section", "scope"),
		// A dashboard draws deploys as annotations where this changes.
		lastDeploy: d("last_deploy_timestamp_seconds", "Event time of the newest deploy on the timeline (a new version, rollout or marker; not the state the window started in), by scope, as a Unix time; 0 before any.", "scope"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.added, c.dropped, c.entries, c.bytes, c.evictions, c.watermark, c.newest, c.ringBytes, c.pending,
		c.deployKeys, c.cacheBytes, c.cacheMax, c.cacheEntries, c.cacheGets, c.cacheSets, c.cacheMis, c.cacheCollisions,
		c.requests, c.errors, c.lastDeploy,
	} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(c.added, float64(st.AddedRequests), "request")
	counter(c.added, float64(st.AddedErrors), "error")
	counter(c.dropped, float64(st.DroppedTooOld), dropReasonName(dropTooOld))
	counter(c.dropped, float64(st.DroppedTooNew), dropReasonName(dropTooNew))
	counter(c.dropped, float64(st.DroppedInvalid), dropReasonName(dropInvalid))
	gauge(c.entries, float64(st.CatalogueEntries))
	gauge(c.bytes, float64(st.CatalogueBytes))
	counter(c.evictions, float64(st.CatalogueEvictions))
	gauge(c.watermark, float64(st.Watermark)/1e9)
	gauge(c.newest, float64(st.Newest)/1e9)
	gauge(c.ringBytes, float64(st.RingBytes))
	gauge(c.pending, float64(st.PendingKeys))
	gauge(c.deployKeys, float64(st.DeployKeys))
	gauge(c.cacheBytes, float64(st.CacheBytes))
	gauge(c.cacheMax, float64(st.CacheMaxBytes))
	gauge(c.cacheEntries, float64(st.CacheEntries))
	counter(c.cacheGets, float64(st.CacheGetCalls))
	counter(c.cacheSets, float64(st.CacheSetCalls))
	counter(c.cacheMis, float64(st.CacheMisses))
	counter(c.cacheCollisions, float64(st.CacheCollisions))
	var last [event.NumScopes]int64
	for _, d := range c.s.Deploys(nil) {
		if !d.Initial && d.Scope < event.NumScopes {
			last[d.Scope] = max(last[d.Scope], d.At)
		}
	}
	for sc, t := range last {
		gauge(c.lastDeploy, float64(t)/1e9, event.Scope(sc).String())
	}
	for sec, name := range c.s.sections {
		for sc := range event.Scope(event.NumScopes) {
			counter(c.requests, float64(c.s.added[addedIndex(uint8(sec), sc, 0)].Load()), name, sc.String())
			counter(c.errors, float64(c.s.added[addedIndex(uint8(sec), sc, 1)].Load()), name, sc.String())
		}
	}
}

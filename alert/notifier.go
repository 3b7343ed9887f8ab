package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/version"

	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/redact"
)

const (
	defaultQueueCapacity = 10000
	// maxBatchSize is the most alerts per POST, as Prometheus sends.
	maxBatchSize   = 256
	defaultTimeout = 10 * time.Second
	// resolvedRetention is how long a resolved finding is remembered after
	// it was sent, so the detector repeating it does not re-send it
	// (Prometheus keeps resolved alerts 15 minutes too).
	resolvedRetention = 15 * time.Minute
	// Retry backoff bounds: quick enough to catch a restarting Alertmanager,
	// slow enough not to hammer one that is down.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
	// maxErrorBody is how much of an error response is kept for the log.
	maxErrorBody    = 512
	alertsAPIPath   = "api/v2/alerts"
	contentTypeJSON = "application/json"
)

// AlertmanagerSet is Alertmanagers that share one HTTP client
// configuration, as a Prometheus alertmanager_config does.
type AlertmanagerSet struct {
	// URLs are base URLs (http[s]://host:port[/prefix]) without user info.
	URLs []string
	// HTTPConfig sets TLS, basic auth (password_file), authorization or
	// bearer token file, proxies.
	HTTPConfig config.HTTPClientConfig
	// Timeout bounds each request (default 10s).
	Timeout time.Duration
}

// NotifierOptions configures a Notifier. Zero values take the documented
// defaults.
type NotifierOptions struct {
	// URLs are the Alertmanager base URLs (http[s]://host:port[/prefix])
	// given on the command line, sent with HTTPConfig and Timeout. They may
	// not carry user info: a command line is visible in ps and at
	// /debug/pprof/cmdline, so credentials belong in the config file (Sets).
	// Every batch goes to every Alertmanager of URLs and Sets: Alertmanager
	// replicas do not share alerts, only silences and the notification log.
	URLs []string
	// Sets are Alertmanagers from the config file, each set with its own
	// HTTP client configuration.
	Sets []AlertmanagerSet
	// ResendDelay is how often a firing alert is re-sent (default 1m).
	ResendDelay time.Duration
	// QueueCapacity bounds the queue; on overflow the oldest alerts go
	// (default 10000).
	QueueCapacity int
	// BatchSize is the most alerts per POST (default and maximum 256).
	BatchSize int
	// Timeout bounds each request (default 10s).
	Timeout time.Duration
	// HTTPConfig sets TLS, basic auth, bearer tokens, proxies, as in
	// Prometheus's alertmanager_config.
	HTTPConfig config.HTTPClientConfig
	// ExternalURL is the detector's own URL; the alert's generatorURL is
	// the finding's page, ExternalURL + "/findings/<id>". Empty: no
	// generatorURL.
	ExternalURL string
	// RunbookURL is the runbook_url annotation, "<kind>" substituted
	// (default https://wikitech.wikimedia.org/wiki/Pretrain/Detector#<kind>).
	RunbookURL string
	// DashboardURL is the optional dashboard annotation, "<kind>" substituted.
	DashboardURL string
	// ExtraLabels are added to every alert, e.g. replay="true". They cannot
	// override the identity labels.
	ExtraLabels map[string]string
	// Do sends a request; tests inject it. Default: c.Do(r.WithContext(ctx)).
	Do func(ctx context.Context, c *http.Client, r *http.Request) (*http.Response, error)
	// Now is the wall clock used for resend timing and EndsAt (default
	// time.Now). Alertmanager compares EndsAt with its own clock, so this is
	// wall time even in replay, unlike finding times, which are event times.
	Now func() time.Time
}

func (o NotifierOptions) withDefaults() NotifierOptions {
	if o.ResendDelay == 0 {
		o.ResendDelay = defaultResendDelay
	}
	if o.QueueCapacity == 0 {
		o.QueueCapacity = defaultQueueCapacity
	}
	if o.BatchSize == 0 {
		o.BatchSize = maxBatchSize
	}
	if o.Timeout == 0 {
		o.Timeout = defaultTimeout
	}
	if o.RunbookURL == "" {
		o.RunbookURL = defaultRunbookURL
	}
	if o.Do == nil {
		o.Do = func(ctx context.Context, c *http.Client, r *http.Request) (*http.Response, error) {
			return c.Do(r.WithContext(ctx))
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// validate checks the options after defaults, naming the offending field.
func (o NotifierOptions) validate() error {
	total := len(o.URLs)
	for _, s := range o.Sets {
		total += len(s.URLs)
	}
	if total == 0 {
		return errors.New("URLs: at least one Alertmanager URL is required")
	}
	switch {
	case o.ResendDelay < 0:
		return fmt.Errorf("ResendDelay: must not be negative, got %s", o.ResendDelay)
	case o.QueueCapacity < 0:
		return fmt.Errorf("QueueCapacity: must not be negative, got %d", o.QueueCapacity)
	case o.BatchSize < 0 || o.BatchSize > maxBatchSize:
		return fmt.Errorf("BatchSize: must be between 1 and %d, got %d", maxBatchSize, o.BatchSize)
	case o.Timeout < 0:
		return fmt.Errorf("Timeout: must not be negative, got %s", o.Timeout)
	}
	if o.ExternalURL != "" {
		if _, err := parseHTTPURL(o.ExternalURL); err != nil {
			return fmt.Errorf("ExternalURL: %w", err)
		}
	}
	if _, err := parseHTTPURL(kindURL(o.RunbookURL, detect.KindPretrainRegression)); err != nil {
		return fmt.Errorf("RunbookURL: %w", err)
	}
	if o.DashboardURL != "" {
		if _, err := parseHTTPURL(kindURL(o.DashboardURL, detect.KindPretrainRegression)); err != nil {
			return fmt.Errorf("DashboardURL: %w", err)
		}
	}
	for name, v := range o.ExtraLabels {
		switch {
		case !validLabelName(name):
			return fmt.Errorf("ExtraLabels: invalid label name %q", name)
		case reservedLabel(name):
			return fmt.Errorf("ExtraLabels: label %q is set from the finding and cannot be overridden", name)
		case v == "" || labelValue(v) != v:
			return fmt.Errorf("ExtraLabels: label %q: value must be non-empty printable text of at most %d bytes", name, maxLabelValue)
		}
	}
	if err := o.HTTPConfig.Validate(); err != nil {
		return fmt.Errorf("HTTPConfig: %w", err)
	}
	for i := range o.Sets {
		if err := o.Sets[i].HTTPConfig.Validate(); err != nil {
			return fmt.Errorf("Sets[%d].HTTPConfig: %w", i, err)
		}
		if o.Sets[i].Timeout < 0 {
			return fmt.Errorf("Sets[%d].Timeout: must not be negative, got %s", i, o.Sets[i].Timeout)
		}
	}
	return nil
}

// ErrURLUserInfo is returned for an Alertmanager URL given with user info on
// the command line.
var ErrURLUserInfo = errors.New("user info in an Alertmanager URL is refused (the command line shows in ps and /debug/pprof/cmdline); " +
	"put the credentials in the config file: alerting.alertmanagers[].basic_auth.password_file")

// parseHTTPURL accepts absolute http and https URLs only.
func parseHTTPURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		// url.Error quotes the whole URL, password included: keep only
		// what is wrong with it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("parse URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("URL %q: scheme must be http or https", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("URL %q: host is missing", u.Redacted())
	}
	return u, nil
}

// alertmanager is one send target.
type alertmanager struct {
	endpoint string // <base>/api/v2/alerts
	label    string // the endpoint: metric label and log key
	client   *http.Client
	timeout  time.Duration
	m        amMetrics
}

// entry is one queued finding; id is its ID, so a newer version of a queued
// finding replaces the older one instead of queueing twice. The alert is
// built from it on every send attempt, not once: EndsAt of a firing alert is
// "now + 4 × resend delay", and a body built before a long outage would
// reach Alertmanager already ended.
type entry struct {
	id string
	f  detect.Finding
}

// sentState is what Update remembers about a finding.
type sentState struct {
	lastSent      time.Time
	resolvedUntil time.Time // non-zero once the resolved alert went out
}

// Notifier sends findings to Alertmanager as alerts, after Prometheus's
// notifier: a bounded queue that drops the oldest alerts on overflow, one
// send loop woken through a channel of capacity 1, batches POSTed to every
// Alertmanager with retries, and a drain on shutdown.
type Notifier struct {
	opts    NotifierOptions
	logger  *slog.Logger
	metrics *metrics
	clients []*http.Client
	ams     []alertmanager

	more chan struct{} // cap 1: coalesces wake-ups of the send loop

	// sending (cap 1) serialises batch delivery between Run and Drain, so
	// the queue drains in order and Drain waits for an in-flight batch, but
	// no longer than its deadline.
	sending chan struct{}

	mu     sync.Mutex
	queue  []*entry
	queued map[string]*entry     // finding ID → its entry in queue
	sent   map[string]*sentState // finding ID → what was last enqueued

	// lost counts alerts dropped on overflow or rejected by every
	// Alertmanager since the last Drain, which reports them.
	lost atomic.Int64
	// inflight is the size of the batch being delivered, for Drain to
	// report alongside the queue.
	inflight atomic.Int64
}

// NewNotifier validates o and builds a Notifier; its metrics are registered
// with reg (nil: not registered). Start it with Run.
func NewNotifier(o NotifierOptions, logger *slog.Logger, reg prometheus.Registerer) (*Notifier, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("alertmanager notifier options: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{
		opts:    o,
		logger:  logger,
		more:    make(chan struct{}, 1),
		sending: make(chan struct{}, 1),
		queued:  make(map[string]*entry),
		sent:    make(map[string]*sentState),
	}
	sets := make([]AlertmanagerSet, 0, 1+len(o.Sets))
	names := make([]string, 0, 1+len(o.Sets))
	if len(o.URLs) > 0 {
		sets = append(sets, AlertmanagerSet{URLs: o.URLs, HTTPConfig: o.HTTPConfig, Timeout: o.Timeout})
		names = append(names, "URLs")
	}
	for i, s := range o.Sets {
		if s.Timeout == 0 {
			s.Timeout = defaultTimeout
		}
		sets = append(sets, s)
		names = append(names, fmt.Sprintf("Sets[%d].URLs", i))
	}
	type target struct {
		set      int
		endpoint string
	}
	var targets []target
	seen := make(map[string]bool)
	for si, set := range sets {
		for i, raw := range set.URLs {
			u, err := parseHTTPURL(raw)
			if err != nil {
				return nil, fmt.Errorf("alertmanager notifier options: %s[%d]: %w", names[si], i, err)
			}
			if u.User != nil {
				return nil, fmt.Errorf("alertmanager notifier options: %s[%d]: URL %q: %w", names[si], i, u.Redacted(), ErrURLUserInfo)
			}
			if u.RawQuery != "" || u.Fragment != "" {
				return nil, fmt.Errorf("alertmanager notifier options: %s[%d]: URL %q: must have no query or fragment", names[si], i, u.Redacted())
			}
			ep := u.JoinPath(alertsAPIPath).String()
			if seen[ep] {
				return nil, fmt.Errorf("alertmanager notifier options: %s[%d]: %q is listed twice", names[si], i, ep)
			}
			seen[ep] = true
			targets = append(targets, target{si, ep})
		}
	}
	for si, set := range sets {
		client, err := config.NewClientFromConfig(set.HTTPConfig, "alertmanager",
			config.WithUserAgent("pretrain-detector/"+version.Version))
		if err != nil {
			return nil, fmt.Errorf("alertmanager notifier options: %s: HTTP client: %w", strings.TrimSuffix(names[si], ".URLs"), err)
		}
		n.clients = append(n.clients, client)
	}
	var err error
	n.metrics, err = newMetrics(reg, func() float64 { return float64(n.QueueLen()) })
	if err != nil {
		return nil, err
	}
	n.metrics.queueCapacity.Set(float64(o.QueueCapacity))
	for _, tg := range targets {
		n.ams = append(n.ams, alertmanager{endpoint: tg.endpoint, label: tg.endpoint, client: n.clients[tg.set],
			timeout: sets[tg.set].Timeout, m: n.metrics.forAlertmanager(tg.endpoint)})
	}
	return n, nil
}

// QueueLen is the number of alerts waiting to be sent.
func (n *Notifier) QueueLen() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.queue)
}

// Notify is Update(all) (Sink): what to send is decided from the whole set
// after every evaluation, so a resend is decided in the evaluation
// goroutine too, the notifier's only caller.
func (n *Notifier) Notify(_, all []detect.Finding) error {
	n.Update(all)
	return nil
}

// Update takes the detector's current set of findings. A firing finding is
// queued when it is new or when ResendDelay has passed since it was last
// queued; a resolved one is queued once and remembered for 15 minutes (and
// as long as it stays in the set) so that repeats are not re-sent; a pending
// one is not sent. A firing finding missing from the set is forgotten: its
// alert ends in Alertmanager at its EndsAt, 4 resend delays after the last
// send, as a Prometheus alert does when its rule goes away.
func (n *Notifier) Update(findings []detect.Finding) {
	now := n.opts.Now()
	n.mu.Lock()
	present := make(map[string]struct{}, len(findings))
	queuedAny := false
	noID, dropped := 0, 0
	for i := range findings {
		f := &findings[i]
		if f.ID == "" {
			// Without an ID there is no identity to resend or resolve by:
			// a detect bug, not something to guess around.
			noID++
			continue
		}
		s := n.sent[f.ID]
		switch f.State {
		case detect.StateFiring:
			present[f.ID] = struct{}{}
			if s != nil && s.resolvedUntil.IsZero() && now.Sub(s.lastSent) < n.opts.ResendDelay {
				continue
			}
			n.sent[f.ID] = &sentState{lastSent: now}
		case detect.StateResolved:
			present[f.ID] = struct{}{}
			if s != nil && !s.resolvedUntil.IsZero() {
				continue
			}
			n.sent[f.ID] = &sentState{lastSent: now, resolvedUntil: now.Add(resolvedRetention)}
		default:
			continue
		}
		dropped += n.enqueueLocked(f.ID, *f)
		queuedAny = true
	}
	for id, s := range n.sent {
		if _, ok := present[id]; ok {
			continue
		}
		if s.resolvedUntil.IsZero() || now.After(s.resolvedUntil) {
			delete(n.sent, id)
		}
	}
	n.mu.Unlock()
	n.logDropped(dropped)
	if noID > 0 {
		n.logger.Warn("Findings without an ID not sent to Alertmanager", "count", noID)
	}
	if queuedAny {
		n.wake()
	}
}

func (n *Notifier) wake() {
	select {
	case n.more <- struct{}{}:
	default:
	}
}

// enqueueLocked queues an alert, replacing a still-queued older version of
// the same finding, and drops the oldest alerts beyond the capacity,
// returning how many.
func (n *Notifier) enqueueLocked(id string, f detect.Finding) int {
	if e, ok := n.queued[id]; ok {
		e.f = f
		return 0
	}
	e := &entry{id: id, f: f}
	n.queue = append(n.queue, e)
	n.queued[id] = e
	return n.trimLocked()
}

// trimLocked drops the oldest entries beyond the capacity, counts them and
// returns how many, for the caller to log once rather than per alert.
func (n *Notifier) trimLocked() int {
	over := len(n.queue) - n.opts.QueueCapacity
	if over <= 0 {
		return 0
	}
	for _, e := range n.queue[:over] {
		if n.queued[e.id] == e {
			delete(n.queued, e.id)
		}
	}
	n.queue = slices.Delete(n.queue, 0, over)
	n.metrics.dropped.Add(float64(over))
	n.lost.Add(int64(over))
	return over
}

func (n *Notifier) logDropped(count int) {
	if count > 0 {
		n.logger.Warn("Alert queue full, dropping alerts", "count", count, "capacity", n.opts.QueueCapacity)
	}
}

// popBatch takes up to BatchSize entries off the front of the queue.
func (n *Notifier) popBatch() []*entry {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := min(n.opts.BatchSize, len(n.queue))
	if k == 0 {
		return nil
	}
	batch := slices.Clone(n.queue[:k])
	for _, e := range batch {
		if n.queued[e.id] == e {
			delete(n.queued, e.id)
		}
	}
	n.queue = slices.Delete(n.queue, 0, k)
	return batch
}

// requeue puts an undelivered batch back at the front of the queue, so that
// Drain, or Run again, sends it first. An alert whose finding has a newer
// version queued meanwhile is superseded and not put back.
func (n *Notifier) requeue(batch []*entry) {
	n.mu.Lock()
	back := make([]*entry, 0, len(batch)+len(n.queue))
	for _, e := range batch {
		if _, ok := n.queued[e.id]; ok {
			continue
		}
		n.queued[e.id] = e
		back = append(back, e)
	}
	n.queue = append(back, n.queue...)
	dropped := n.trimLocked()
	n.mu.Unlock()
	n.logDropped(dropped)
}

// Run is the send loop: it waits for queued alerts and sends them in batches
// until ctx is done. A batch interrupted by ctx goes back to the queue for
// Drain.
func (n *Notifier) Run(ctx context.Context) {
	// Alerts queued before Run started have already signalled n.more, so
	// nothing is missed.
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.more:
		}
		for ctx.Err() == nil {
			if !n.sendNext(ctx) {
				break
			}
		}
	}
}

// Drain sends every queued alert, retrying under ctx, for shutdown: call it
// after cancelling Run's context, with a deadline. It returns an error when
// alerts remain queued at the deadline, or when alerts were dropped on
// overflow or rejected by every Alertmanager since the previous Drain, so a
// replay can exit non-zero if an alert failed to send.
func (n *Notifier) Drain(ctx context.Context) error {
	// The connections are not needed after a drain; closing them lets the
	// process (and leak-checking tests) end without lingering readers.
	defer func() {
		for _, c := range n.clients {
			c.CloseIdleConnections()
		}
	}()
	for ctx.Err() == nil {
		if !n.sendNext(ctx) {
			break
		}
	}
	var errs []error
	if q := int64(n.QueueLen()) + n.inflight.Load(); q > 0 {
		err := fmt.Errorf("drain alert queue: %d alerts not sent", q)
		if cause := context.Cause(ctx); cause != nil {
			err = fmt.Errorf("drain alert queue: %d alerts not sent: %w", q, cause)
		}
		errs = append(errs, err)
	}
	if lost := n.lost.Swap(0); lost > 0 {
		errs = append(errs, fmt.Errorf("drain alert queue: %d alerts were dropped on overflow or rejected by every Alertmanager", lost))
	}
	return errors.Join(errs...)
}

// sendNext delivers one batch and reports whether it did, so the caller may
// go on with the next.
func (n *Notifier) sendNext(ctx context.Context) bool {
	select {
	case n.sending <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	defer func() { <-n.sending }()
	batch := n.popBatch()
	if len(batch) == 0 {
		return false
	}
	n.inflight.Store(int64(len(batch)))
	defer n.inflight.Store(0)
	done, accepted := n.deliver(ctx, batch)
	if !done {
		n.requeue(batch)
		return false
	}
	if !accepted {
		n.lost.Add(int64(len(batch)))
	}
	return true
}

// sendResult is the outcome of one POST to one Alertmanager.
type sendResult int

const (
	sendOK sendResult = iota
	sendRetry
	sendRejected
)

// deliver POSTs a batch to every Alertmanager and retries, with bounded
// exponential backoff, those that fail transiently (network errors, 5xx,
// 429), until one accepts it. A 4xx is final: the same body would be rejected
// again. It returns done = false only when ctx ended first; accepted tells
// whether any Alertmanager took the batch. Once one replica has the batch
// the others are not retried: resends repair what they missed, and one dead
// replica must not stall the queue for the live ones (Prometheus does the
// same).
func (n *Notifier) deliver(ctx context.Context, batch []*entry) (done, accepted bool) {
	pending := make([]int, len(n.ams))
	for i := range pending {
		pending[i] = i
	}
	backoff := minBackoff
	results := make([]sendResult, len(n.ams))
	for attempt := 1; ; attempt++ {
		body, err := n.body(batch)
		if err != nil {
			n.logger.Error("Encoding alerts", "err", err, "count", len(batch))
			return true, false
		}
		var wg sync.WaitGroup
		for _, i := range pending {
			wg.Go(func() { results[i] = n.send(ctx, n.ams[i], body, len(batch), attempt) })
		}
		wg.Wait()
		var retry []int
		for _, i := range pending {
			switch results[i] {
			case sendOK:
				accepted = true
				if attempt > 1 {
					n.logger.Info("Alertmanager accepted alerts after retries", "alertmanager", n.ams[i].label, "attempts", attempt)
				}
			case sendRetry:
				retry = append(retry, i)
			case sendRejected:
			}
		}
		if accepted || len(retry) == 0 {
			return true, accepted
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, false
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
		pending = retry
	}
}

// body encodes the batch's alerts as of now: rebuilt for each attempt, so
// a firing finding's EndsAt always lies 4 resend delays after the attempt
// that carries it, however long Alertmanager was away.
func (n *Notifier) body(batch []*entry) ([]byte, error) {
	now := n.opts.Now()
	alerts := make(models.PostableAlerts, len(batch))
	for i, e := range batch {
		alerts[i] = AlertFor(e.f, n.opts, now)
	}
	b, err := json.Marshal(alerts)
	if err != nil {
		return nil, fmt.Errorf("encode alerts: %w", err)
	}
	return b, nil
}

// send POSTs body to one Alertmanager and classifies the outcome.
func (n *Notifier) send(ctx context.Context, am alertmanager, body []byte, count, attempt int) sendResult {
	rctx, cancel := context.WithTimeout(ctx, am.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, am.endpoint, bytes.NewReader(body))
	if err != nil {
		// The endpoint was validated at construction; this cannot heal.
		n.logger.Error("Building Alertmanager request", "alertmanager", am.label, "err", err)
		am.m.errors.Add(float64(count))
		return sendRejected
	}
	req.Header.Set("Content-Type", contentTypeJSON)
	begin := time.Now()
	resp, err := n.opts.Do(rctx, am.client, req)
	if err == nil {
		err = checkResponse(resp)
	}
	am.m.latency.Observe(time.Since(begin).Seconds())
	if err == nil {
		am.m.sent.Add(float64(count))
		return sendOK
	}
	if ctx.Err() != nil {
		// Shutdown, not the Alertmanager's fault: the batch is requeued.
		return sendRetry
	}
	am.m.errors.Add(float64(count))
	var se *statusError
	rejected := errors.As(err, &se) && se.code >= 400 && se.code < 500 && se.code != http.StatusTooManyRequests
	switch {
	case rejected:
		n.logger.Error("Alertmanager rejected alerts", "alertmanager", am.label, "count", count, "err", err)
		return sendRejected
	case logAttempt(attempt):
		// A down Alertmanager is retried for as long as it is down: log on
		// attempts 1, 2, 4, 8, … only.
		n.logger.Warn("Sending alerts to Alertmanager, will retry", "alertmanager", am.label, "count", count, "attempt", attempt, "err", err)
	}
	return sendRetry
}

// logAttempt reports whether a failed attempt is logged: powers of two.
func logAttempt(attempt int) bool { return attempt&(attempt-1) == 0 }

// statusError is a non-2xx answer.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	if e.body == "" {
		return fmt.Sprintf("bad response status %d", e.code)
	}
	return fmt.Sprintf("bad response status %d: %s", e.code, e.body)
}

// checkResponse consumes and closes resp's body (so the connection is
// reused) and turns a non-2xx status into a statusError.
func checkResponse(resp *http.Response) error {
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close() // nothing left to lose: the status is what counts
	}()
	if resp.StatusCode/100 == 2 {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody)) // best effort, for the log
	return &statusError{code: resp.StatusCode, body: redact.Clean(strings.TrimSpace(string(b)), maxErrorBody, false)}
}

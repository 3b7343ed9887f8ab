// Package api is the detector's HTTP face: /metrics, the /-/ probes,
// /api/v1/findings, /api/v1/status, /api/v1/deploys (POST behind
// --web.enable-admin-api), pprof, and the live page and deploy verdicts
// (Pages). It reads the running pipeline; it sends nothing anywhere (the
// sinks in package alert do).
package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/redact"
	"github.com/wikimedia/pretrain-detector/window"
)

// Options are what the HTTP endpoints read and call. Nil functions
// disable their endpoint.
type Options struct {
	Gatherer prometheus.Gatherer
	Findings func() []detect.Finding
	// Ready reports readiness and, when not ready, why.
	Ready func() (bool, string)
	// Reload re-reads the configuration (POST /-/reload); nil unless
	// lifecycle endpoints are enabled.
	Reload func() error
	// AddDeploy records a deploy marker (POST /api/v1/deploys): in the
	// daemon it produces the marker to the marker topic. nil (the default,
	// without --web.enable-admin-api) answers the endpoint with 404: it
	// changes what the detector blames, so it is off unless asked for.
	AddDeploy func(DeployMarker) error
	// DeployMaxAge and DeployMaxAhead bound a posted marker's "at" to
	// [now − DeployMaxAge, now + DeployMaxAhead]: a marker older than the
	// window explains nothing, and one far ahead would stand as the latest
	// deploy until its time came. Zero: the config defaults of
	// window.length and deploy_markers.max_ahead.
	DeployMaxAge, DeployMaxAhead time.Duration
	// Now is the clock "at" is checked against (default time.Now).
	Now func() time.Time
	// Status is served as JSON at /api/v1/status; it must hold no secret.
	Status func() any
	// Mount adds further handlers (the live page at /, the deploy verdicts
	// at GET /api/v1/deploys); without it / answers one line of text.
	Mount  func(*http.ServeMux)
	Logger *slog.Logger
}

// DeployMarker is the body of POST /api/v1/deploys.
type DeployMarker struct {
	Scope   string    `json:"scope"` // "pretrain" or "train"
	Group   string    `json:"group,omitempty"`
	Version string    `json:"version"`
	At      time.Time `json:"at"` // defaults to now
	// By is who posted it: the basic-auth user if any, and the remote
	// address. Set by the server, never taken from the body.
	By string `json:"by,omitempty"`
}

// Request limits. Every request body is bounded (the only endpoint that
// reads one takes a small JSON object), so a client cannot make the
// detector buffer without end.
const (
	maxRequestBytes = 64 << 10
	maxDeployBytes  = 4 << 10
	maxFieldEcho    = 64
)

// NewHandler returns the detector's HTTP endpoints: /metrics, the /-/
// probes, /api/v1/findings, /api/v1/deploys, /api/v1/status and pprof.
func NewHandler(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DeployMaxAge <= 0 {
		o.DeployMaxAge = time.Duration(config.Default().Window.Length)
	}
	if o.DeployMaxAhead <= 0 {
		o.DeployMaxAhead = time.Duration(config.Default().DeployMarkers.MaxAhead)
	}
	mux := http.NewServeMux()
	if o.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = fmt.Fprintln(w, "Healthy.")
	})
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if o.Ready != nil {
			if ok, why := o.Ready(); !ok {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintf(w, "Not ready: %s\n", why)
				return
			}
		}
		w.WriteHeader(http.StatusOK)
		_, _ = fmt.Fprintln(w, "Ready.")
	})
	if o.Reload != nil {
		mux.HandleFunc("POST /-/reload", func(w http.ResponseWriter, _ *http.Request) {
			if err := o.Reload(); err != nil {
				http.Error(w, "reload: "+err.Error(), http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusOK)
		})
	}
	if o.Findings != nil {
		mux.HandleFunc("GET /api/v1/findings", func(w http.ResponseWriter, r *http.Request) {
			id, state, kind := r.URL.Query().Get("id"), r.URL.Query().Get("state"), r.URL.Query().Get("kind")
			out := []detect.Finding{}
			for _, f := range o.Findings() {
				if (id == "" || f.ID == id) && (state == "" || string(f.State) == state) && (kind == "" || string(f.Kind) == kind) {
					out = append(out, redact.Finding(f))
				}
			}
			writeJSON(w, http.StatusOK, out, o.Logger)
		})
	}
	mux.HandleFunc("POST /api/v1/deploys", func(w http.ResponseWriter, r *http.Request) {
		if o.AddDeploy == nil {
			http.Error(w, "deploy markers are written through the admin API, which is off: start with --web.enable-admin-api", http.StatusNotFound)
			return
		}
		addDeploy(w, r, o)
	})
	if o.Status != nil {
		mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, o.Status(), o.Logger) })
	}
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	if o.Mount != nil {
		o.Mount(mux)
		return mux
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(w, "Pretrain regression detector: /api/v1/findings /metrics /-/ready /-/healthy")
	})
	return http.MaxBytesHandler(mux, maxRequestBytes)
}

// addDeploy serves POST /api/v1/deploys: JSON only (415 otherwise, so no
// HTML form or text/plain fetch from another site can post one without a
// CORS preflight), every field bounded (400 naming it), who posted what
// logged, then handed to AddDeploy.
func addDeploy(w http.ResponseWriter, r *http.Request, o Options) {
	user := basicAuthUser(r)
	by := r.RemoteAddr
	if user != "" {
		by = user + "@" + r.RemoteAddr
	}
	log := o.Logger.With("remote_addr", r.RemoteAddr, "user", user)
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		log.Warn("Deploy marker refused", "reason", "content type is not application/json")
		http.Error(w, "bad deploy marker: Content-Type must be application/json", http.StatusUnsupportedMediaType)
		return
	}
	m, err := decodeDeployMarker(http.MaxBytesReader(w, r.Body, maxDeployBytes))
	if err == nil {
		err = checkDeployMarker(&m, o)
	}
	if err != nil {
		log.Warn("Deploy marker refused", "reason", err)
		http.Error(w, "bad deploy marker: "+err.Error(), http.StatusBadRequest)
		return
	}
	m.By = by
	if err := o.AddDeploy(m); err != nil {
		log.Error("Deploy marker not recorded", "err", err, "scope", m.Scope, "group", m.Group, "version", m.Version, "at", m.At)
		http.Error(w, "add deploy: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	log.Info("Deploy marker posted", "scope", m.Scope, "group", m.Group, "version", m.Version, "at", m.At)
	writeJSON(w, http.StatusAccepted, m, o.Logger)
}

// basicAuthUser is the request's basic-auth user name, bounded; "" without.
func basicAuthUser(r *http.Request) string {
	user, _, _ := r.BasicAuth()
	return redact.Clean(user, maxFieldEcho, false)
}

// checkDeployMarker bounds each field, naming the one that is wrong: the
// lengths and characters of the deploy timeline's own check, and at within
// [now − DeployMaxAge, now + DeployMaxAhead] (now if absent).
func checkDeployMarker(m *DeployMarker, o Options) error {
	now := o.Now().UTC()
	if m.At.IsZero() {
		m.At = now
	}
	if _, err := window.NewMarker(m.Scope, m.Group, m.Version, m.At, ""); err != nil {
		return err
	}
	switch {
	case m.At.Before(now.Add(-o.DeployMaxAge)):
		return fmt.Errorf("field at: %s is more than %s ago (the window)", m.At.Format(time.RFC3339), o.DeployMaxAge)
	case m.At.After(now.Add(o.DeployMaxAhead)):
		return fmt.Errorf("field at: %s is more than %s ahead of now", m.At.Format(time.RFC3339), o.DeployMaxAhead)
	}
	return nil
}

// decodeDeployMarker reads one JSON object. Errors name the field where
// they can: at is parsed here, as time.Time's own errors do not say which
// field they are about.
func decodeDeployMarker(r io.Reader) (DeployMarker, error) {
	var in struct {
		Scope   string `json:"scope"`
		Group   string `json:"group"`
		Version string `json:"version"`
		At      string `json:"at"`
	}
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return DeployMarker{}, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return DeployMarker{}, errors.New("want one JSON object, found more after it")
	}
	m := DeployMarker{Scope: in.Scope, Group: in.Group, Version: in.Version}
	if in.At != "" {
		at, err := time.Parse(time.RFC3339Nano, in.At)
		if err != nil {
			return DeployMarker{}, fmt.Errorf("field at: want an RFC 3339 time: %w", err)
		}
		m.At = at.UTC()
	}
	return m, nil
}

// writeJSON encodes v with the status code. encoding/json escapes <, > and &
// (SetEscapeHTML is on by default), so error messages from events never
// become markup. The headers go before WriteHeader, which freezes them.
func writeJSON(w http.ResponseWriter, code int, v any, logger *slog.Logger) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	if err := enc.Encode(v); err != nil && !errors.Is(err, http.ErrHandlerTimeout) {
		logger.Debug("Writing JSON response", "err", err)
	}
}

package alert

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wikimedia/pretrain-detector/detect"
)

// WebOptions are what the HTTP endpoints read and call. Nil functions
// disable their endpoint.
type WebOptions struct {
	Gatherer prometheus.Gatherer
	Findings func() []detect.Finding
	// Ready reports readiness and, when not ready, why.
	Ready func() (bool, string)
	// Reload re-reads the configuration (POST /-/reload); nil unless
	// lifecycle endpoints are enabled.
	Reload func() error
	// AddDeploy records a deploy marker (POST /api/v1/deploys).
	AddDeploy func(DeployMarker) error
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
}

// NewHandler returns the detector's HTTP endpoints: /metrics, the /-/
// probes, /api/v1/findings, /api/v1/deploys, /api/v1/status and pprof.
func NewHandler(o WebOptions) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
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
					out = append(out, f)
				}
			}
			writeJSON(w, http.StatusOK, out, o.Logger)
		})
	}
	if o.AddDeploy != nil {
		mux.HandleFunc("POST /api/v1/deploys", func(w http.ResponseWriter, r *http.Request) {
			m, err := decodeDeployMarker(http.MaxBytesReader(w, r.Body, 64<<10))
			if err != nil {
				http.Error(w, "bad deploy marker: "+err.Error(), http.StatusBadRequest)
				return
			}
			if m.Scope != "pretrain" && m.Scope != "train" {
				http.Error(w, `bad deploy marker: field scope: want "pretrain" or "train"`, http.StatusBadRequest)
				return
			}
			if strings.TrimSpace(m.Version) == "" {
				http.Error(w, "bad deploy marker: field version: required", http.StatusBadRequest)
				return
			}
			if m.At.IsZero() {
				m.At = time.Now().UTC()
			}
			if err := o.AddDeploy(m); err != nil {
				http.Error(w, "add deploy: "+err.Error(), http.StatusInternalServerError)
				return
			}
			writeJSON(w, http.StatusAccepted, m, o.Logger)
		})
	}
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
	return mux
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

// FindingsText renders findings as plain text (the demo's console, tests).
func FindingsText(fs []detect.Finding) string {
	var b strings.Builder
	for _, f := range fs {
		FormatText(&b, f)
	}
	return b.String()
}

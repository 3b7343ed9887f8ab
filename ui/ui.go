// Package ui is the daemon's own web page and its deploy-verdict API:
//
//   - GET / — active and recent findings, newest first, each with its kind,
//     severity, wikis, the deploy it follows and that deploy's verdict, its
//     summary, evidence and a plot of its cohort's and control's error
//     rates with the deploy markers; the deploy timeline with every
//     deploy's verdict; and the detector's health (partitions read,
//     stalled or missing, lag, watermark delay, the cohort test's state,
//     fleet-wide and other incidents).
//   - GET /findings/{id} — one finding: what the alerts' source link opens.
//   - GET /api/v1/deploys — every deploy of the window with its verdict
//     (package verdict), newest first; GET /api/v1/deploys/{version}
//     (URL-escaped; ?group= picks a train group) — the newest deploy of
//     that version.
//
// The page is rendered on the server by package render (the same
// templates as the replay report), loads nothing from elsewhere and
// carries a strict Content-Security-Policy: no inline style attribute, no
// event handler, one small script allowed by a per-response nonce. The
// script refreshes the page's live part in place (it fetches the page and
// swaps one element, so nothing flickers); without it the page is a
// complete static view.
package ui

import (
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/render"
	"github.com/wikimedia/pretrain-detector/verdict"
)

// Options are what the page and the API read. Findings, Deploys, Source and
// Ledger are required; nil Plot and Health leave their parts out.
type Options struct {
	Title   string // default "Pretrain regression detector"
	Version string // the detector's version, in the footer

	Findings func() []detect.Finding
	// Deploys is the deploy timeline (any order; initial states left out).
	Deploys func() []verdict.Deploy
	// Source holds the counts verdicts and the timeline read.
	Source verdict.Source
	Ledger *verdict.Ledger
	// Plot returns a finding's per-minute series from the window; nil when
	// the window no longer holds it.
	Plot   func(detect.Finding) *render.Plot
	Health func() Health

	// Refresh is how often the script refreshes the page; default 10 s.
	Refresh time.Duration
	// MaxPlots bounds the plots computed for /; the others are on each
	// finding's page. Default 8.
	MaxPlots int
	// MaxRecent bounds the resolved findings listed on /; default 20.
	MaxRecent int
	Logger    *slog.Logger
}

// UI serves the page and the deploy API.
type UI struct {
	o    Options
	page *template.Template
}

//go:embed page.html.tmpl
var pageTemplate string

//go:embed refresh.js
var refreshScript string

// New checks o and parses the templates.
func New(o Options) (*UI, error) {
	if o.Findings == nil || o.Deploys == nil || o.Source == nil || o.Ledger == nil {
		return nil, errors.New("ui: Findings, Deploys, Source and Ledger are required")
	}
	if o.Title == "" {
		o.Title = "Pretrain regression detector"
	}
	if o.Refresh <= 0 {
		o.Refresh = 10 * time.Second
	}
	if o.MaxPlots <= 0 {
		o.MaxPlots = 8
	}
	if o.MaxRecent <= 0 {
		o.MaxRecent = 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	t, err := render.Parse("page", pageTemplate)
	if err != nil {
		return nil, err
	}
	return &UI{o: o, page: t}, nil
}

// Register adds the page and the API to mux. The deploy list is GET only:
// POST /api/v1/deploys (a deploy marker) is another handler's.
func (u *UI) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", u.serveIndex)
	mux.HandleFunc("GET /findings/{id}", u.serveFinding)
	mux.HandleFunc("GET /api/v1/deploys", u.serveDeploys)
	mux.HandleFunc("GET /api/v1/deploys/{version}", u.serveDeploy)
}

// FindingPath is the path of a finding's page.
func FindingPath(id string) string { return "/findings/" + url.PathEscape(id) }

// Verdicts returns every deploy's verdict, newest first.
func (u *UI) Verdicts() []verdict.Result {
	return u.o.Ledger.Judge(u.o.Deploys(), u.o.Findings(), u.o.Source)
}

func (u *UI) serveDeploys(w http.ResponseWriter, r *http.Request) {
	rs := u.Verdicts()
	if sc := r.URL.Query().Get("scope"); sc != "" {
		rs = slices.DeleteFunc(rs, func(v verdict.Result) bool { return v.Scope != sc })
	}
	writeJSON(w, http.StatusOK, rs, u.o.Logger)
}

func (u *UI) serveDeploy(w http.ResponseWriter, r *http.Request) {
	version, group := r.PathValue("version"), r.URL.Query().Get("group")
	for _, v := range u.Verdicts() { // newest first
		if v.Names(version) && (group == "" || v.Group == group) {
			writeJSON(w, http.StatusOK, v, u.o.Logger)
			return
		}
	}
	msg := fmt.Sprintf("no deploy of version %q in the window", version)
	if group != "" {
		msg = fmt.Sprintf("no deploy of version %q to %q in the window", version, group)
	}
	writeJSON(w, http.StatusNotFound, map[string]string{"error": msg}, u.o.Logger)
}

// page is the template's data.
type page struct {
	Title, Heading string // the document's title, the detector's
	Version        string
	Nonce          string
	Script         template.JS
	Refresh        int64 // ms
	Rendered       time.Time
	Health         *healthView

	// The index.
	Index    bool
	Active   []render.FindingView
	Recent   []render.FindingView
	Verdicts []render.VerdictView
	Timeline *render.TimelineView
	Counts   map[string]int

	// A finding's page.
	Finding  *render.FindingView
	VerdictR []render.VerdictView // its deploy's verdict, as a row
	Missing  string               // the id asked for, when not found
}

func (u *UI) serveIndex(w http.ResponseWriter, r *http.Request) {
	fs := u.o.Findings()
	verdicts := u.o.Ledger.Judge(u.o.Deploys(), fs, u.o.Source)
	deploys := renderDeploys(verdicts)
	// Newest first; active (firing, then pending) before resolved.
	slices.SortStableFunc(fs, func(a, b detect.Finding) int {
		if ra, rb := rank(a.State), rank(b.State); ra != rb {
			return ra - rb
		}
		return b.DetectedAt.Compare(a.DetectedAt)
	})
	var active, recent []render.Finding
	for _, f := range fs {
		rf := render.Finding{Finding: f}
		if f.State == detect.StateResolved {
			if len(recent) < u.o.MaxRecent {
				recent = append(recent, rf)
			}
			continue
		}
		active = append(active, rf)
	}
	plots := 0
	for _, list := range [][]render.Finding{active, recent} {
		for i := range list {
			if u.o.Plot != nil && plots < u.o.MaxPlots {
				list[i].Plot = u.o.Plot(list[i].Finding)
				plots++
			}
		}
	}
	p := u.newPage(r)
	p.Index = true
	p.Active = render.Findings(active, deploys, verdicts, FindingPath)
	p.Recent = render.Findings(recent, deploys, verdicts, FindingPath)
	for _, list := range [][]render.FindingView{p.Active, p.Recent} {
		for i := range list {
			if list[i].Plot == nil {
				list[i].NoPlot = "The plot is on the finding's own page."
			}
		}
	}
	p.Verdicts = render.Verdicts(verdicts, FindingPath)
	p.Counts = map[string]int{}
	for _, v := range verdicts {
		p.Counts[string(v.Verdict)]++
	}
	if start, end := u.o.Source.DataStart(), u.o.Source.Watermark(); !start.IsZero() && end.After(start) {
		all := render.Findings(append(slices.Clone(active), recent...), deploys, nil, FindingPath)
		tl := render.Timeline(start, start, end, deploys, all)
		tl.Label = "Findings and deploys over the window"
		p.Timeline = &tl
	}
	u.write(w, r, http.StatusOK, p)
}

func rank(s detect.State) int {
	switch s {
	case detect.StateFiring:
		return 0
	case detect.StatePending:
		return 1
	}
	return 2
}

func (u *UI) serveFinding(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	fs := u.o.Findings()
	p := u.newPage(r)
	i := slices.IndexFunc(fs, func(f detect.Finding) bool { return f.ID == id })
	if i < 0 {
		p.Missing = id
		u.write(w, r, http.StatusNotFound, p)
		return
	}
	verdicts := u.o.Ledger.Judge(u.o.Deploys(), fs, u.o.Source)
	rf := render.Finding{Finding: fs[i]}
	if u.o.Plot != nil {
		rf.Plot = u.o.Plot(fs[i])
	}
	views := render.Findings([]render.Finding{rf}, renderDeploys(verdicts), verdicts, nil)
	if views[0].Plot == nil {
		views[0].NoPlot = "No per-minute series: the window no longer holds the minutes around the onset."
	}
	p.Finding = &views[0]
	if v := views[0].Verdict; v != nil {
		p.VerdictR = render.Verdicts([]verdict.Result{*v}, FindingPath)
	}
	p.Title = string(fs[i].Kind) + " · " + p.Title
	u.write(w, r, http.StatusOK, p)
}

func renderDeploys(vs []verdict.Result) []render.Deploy {
	out := make([]render.Deploy, 0, len(vs))
	for _, v := range vs {
		out = append(out, render.Deploy{Scope: v.Scope, Group: v.Group, Version: v.Version, Source: v.Source, At: v.At})
	}
	return out
}

func (u *UI) newPage(_ *http.Request) page {
	p := page{Title: u.o.Title, Heading: u.o.Title, Version: u.o.Version, Nonce: nonce(), Script: template.JS(refreshScript),
		Refresh: u.o.Refresh.Milliseconds(), Rendered: time.Now().UTC()}
	if u.o.Health != nil {
		p.Health = newHealthView(u.o.Health(), p.Rendered)
	}
	return p
}

// write renders the page with its security headers, or with
// ?fragment=live only its live part, which the script fetches to swap in
// (a whole page would bring a style element whose nonce is not the current
// page's). The nonce allows the page's one script and its style element
// and nothing else; connect-src lets the script fetch the fragment.
func (u *UI) write(w http.ResponseWriter, r *http.Request, code int, p page) {
	var b strings.Builder
	name := "page"
	if r.URL.Query().Get("fragment") == "live" {
		name = "live"
	}
	if err := u.page.ExecuteTemplate(&b, name, p); err != nil {
		u.o.Logger.Error("Rendering the page", "err", err)
		http.Error(w, "rendering the page failed; see the detector's log", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", ContentSecurityPolicy(p.Nonce))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(b.String()))
}

// ContentSecurityPolicy is the page's policy for one response's nonce.
func ContentSecurityPolicy(nonce string) string {
	return "default-src 'none'; script-src 'nonce-" + nonce + "'; style-src 'nonce-" + nonce + "'; " +
		"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

// nonce is 128 random bits, fresh for every response.
func nonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// writeJSON encodes v with the status code; encoding/json escapes <, > and
// &, so text from events never becomes markup.
func writeJSON(w http.ResponseWriter, code int, v any, logger *slog.Logger) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		logger.Debug("Writing JSON response", "err", err)
	}
}

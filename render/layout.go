package render

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Plot geometry, in SVG user units.
const (
	plotW, plotH              = 940, 270
	padL, padR, padT, padB    = 52, 16, 14, 40
	timelineW                 = 960
	timelineRowH, timelineTop = 22, 34
)

// PlotView is a plot laid out for the "plot" template.
type PlotView struct {
	W, H           int
	X0, X1, Y0, Y1 float64 // the plotting area
	XTicks         []tick
	YTicks         []tick
	YLabel         string
	Cohort         series
	Control        series
	Fingerprint    *series
	Markers        []marker
	Onset          *marker
	Detected       *marker
	CohortLabel    string
	ControlLabel   string
}

type tick struct {
	Pos   float64
	Label string
}

type series struct {
	Path   string // SVG path data
	Points []dot
}

type dot struct {
	X, Y  float64
	Title string
}

type marker struct {
	X     float64
	Class string
	Label string
}

// rate is errors per 1000 requests, or NaN without requests.
func rate(errs, reqs int64) float64 {
	if reqs <= 0 {
		return math.NaN()
	}
	return 1000 * float64(errs) / float64(reqs)
}

// layoutPlot lays out a finding's plot: axes, the cohort's, the control's
// and the fingerprint's rates step by step, and the deploy, onset and
// detection markers that fall inside it.
func layoutPlot(f Finding, deploys []Deploy) *PlotView {
	p := f.Plot
	step := p.Step
	if step <= 0 {
		step = time.Minute
	}
	n := len(p.Points)
	t0 := p.Start
	fr := plotFrame{t0: t0, t1: t0.Add(time.Duration(n) * step), step: step}
	v := &PlotView{W: plotW, H: plotH, X0: padL, X1: plotW - padR, Y0: plotH - padB, Y1: padT}
	fr.v = v
	v.YLabel = "errors per 1000 requests, per " + stepText(step)
	cohort, control, fp, top := plotRates(p.Points)
	var yticks []float64
	fr.ymax, yticks = niceScale(top)
	for _, t := range yticks {
		v.YTicks = append(v.YTicks, tick{Pos: round1(fr.y(t)), Label: FloatText(t)})
	}
	for _, t := range timeTicks(fr.t0, fr.t1, 6) {
		v.XTicks = append(v.XTicks, tick{Pos: round1(fr.x(t)), Label: t.UTC().Format("15:04")})
	}
	v.CohortLabel = cohortLabel(p)
	v.ControlLabel = "control: every other wiki (train-served)"
	v.Cohort = fr.series(p.Points, cohort, func(pt Point) int64 { return pt.CohortErrors }, func(pt Point) int64 { return pt.CohortRequests }, "cohort")
	v.Control = fr.series(p.Points, control, func(pt Point) int64 { return pt.ControlErrors }, func(pt Point) int64 { return pt.ControlRequests }, "control")
	if p.Fingerprint != "" {
		s := fr.series(p.Points, fp, func(pt Point) int64 { return pt.FingerprintErrors }, func(pt Point) int64 { return pt.CohortRequests }, "this error on the cohort")
		v.Fingerprint = &s
	}
	fr.markers(f, deploys)
	return v
}

// plotFrame maps a plot's time and rates onto its plotting area, [t0, t1)
// across and [0, ymax] up. It keeps the arithmetic of each coordinate in
// one place so that every series and marker lands on the same scale.
type plotFrame struct {
	v      *PlotView
	t0, t1 time.Time
	step   time.Duration
	ymax   float64
}

// x is the abscissa of time t.
func (fr *plotFrame) x(t time.Time) float64 {
	return fr.v.X0 + (fr.v.X1-fr.v.X0)*float64(t.Sub(fr.t0))/float64(fr.t1.Sub(fr.t0))
}

// y is the ordinate of rate r.
func (fr *plotFrame) y(r float64) float64 { return fr.v.Y0 - (fr.v.Y0-fr.v.Y1)*r/fr.ymax }

// mid is the middle of step i: a step's rate is drawn there, not at its start.
func (fr *plotFrame) mid(i int) time.Time { return fr.t0.Add(time.Duration(i)*fr.step + fr.step/2) }

// stepText names a step for the y axis: "minute" for the usual step.
func stepText(step time.Duration) string {
	if step != time.Minute {
		return DurText(step)
	}
	return "minute"
}

// plotRates returns the cohort's, the control's and the fingerprint's
// rates (NaN where a step has no requests) and the highest of them, which
// the y axis must reach.
func plotRates(points []Point) (cohort, control, fp []float64, top float64) {
	n := len(points)
	cohort = make([]float64, n)
	control = make([]float64, n)
	fp = make([]float64, n)
	for i, pt := range points {
		cohort[i] = rate(pt.CohortErrors, pt.CohortRequests)
		control[i] = rate(pt.ControlErrors, pt.ControlRequests)
		fp[i] = rate(pt.FingerprintErrors, pt.CohortRequests)
		for _, r := range []float64{cohort[i], control[i], fp[i]} {
			if !math.IsNaN(r) {
				top = max(top, r)
			}
		}
	}
	return cohort, control, fp, top
}

// cohortLabel names the cohort for the legend: its first three wikis, and
// how many more, so that a spillover over dozens of wikis stays one line.
func cohortLabel(p *Plot) string {
	who := strings.Join(p.Cohort[:min(3, len(p.Cohort))], ", ")
	if len(p.Cohort) > 3 {
		who += fmt.Sprintf(" and %d more", len(p.Cohort)-3)
	}
	return fmt.Sprintf("cohort: %s (%s-served)", who, p.CohortScope)
}

// series draws one line of the plot: a path broken where a step has no
// requests (a gap is not a zero rate), and a dot per step whose title gives
// its counts (errs and reqs read them from a point).
func (fr *plotFrame) series(points []Point, vals []float64, errs, reqs func(Point) int64, what string) series {
	var s series
	var path strings.Builder
	pen := false
	for i, r := range vals {
		if math.IsNaN(r) {
			pen = false
			continue
		}
		px, py := round1(fr.x(fr.mid(i))), round1(fr.y(r))
		if pen {
			fmt.Fprintf(&path, " L%g %g", px, py)
		} else {
			fmt.Fprintf(&path, " M%g %g", px, py)
			pen = true
		}
		pt := points[i]
		s.Points = append(s.Points, dot{X: px, Y: py, Title: fmt.Sprintf("%s %s: %s errors in %s requests (%s per 1000)",
			fr.mid(i).Add(-fr.step/2).UTC().Format("15:04"), what, Num(errs(pt)), Num(reqs(pt)), FloatText(r))})
	}
	s.Path = strings.TrimSpace(path.String())
	return s
}

// markers places the deploys, the estimated onset and the detection that
// fall within the plot's time range; those outside are left out rather
// than drawn on its edges.
func (fr *plotFrame) markers(f Finding, deploys []Deploy) {
	v, t0, t1 := fr.v, fr.t0, fr.t1
	for _, dp := range deploys {
		if dp.At.Before(t0) || !dp.At.Before(t1) {
			continue
		}
		v.Markers = append(v.Markers, marker{X: round1(fr.x(dp.At)), Class: "deploy-" + scopeClass(dp.Scope),
			Label: "deploy: " + DeployText(dp.Scope, dp.Group, dp.Version, dp.At)})
	}
	if !f.StartedAt.IsZero() && !f.StartedAt.Before(t0) && f.StartedAt.Before(t1) {
		v.Onset = &marker{X: round1(fr.x(f.StartedAt)), Class: "onset", Label: "estimated onset " + TimeText(f.StartedAt)}
	}
	if !f.DetectedAt.Before(t0) && f.DetectedAt.Before(t1) {
		v.Detected = &marker{X: round1(fr.x(f.DetectedAt)), Class: "detected", Label: "detected " + TimeText(f.DetectedAt)}
	}
}

func scopeClass(scope string) string {
	if scope == "pretrain" {
		return "pretrain"
	}
	return "train"
}

// TimelineView is the "timeline" template's data: findings as bars, deploys as lines.
type TimelineView struct {
	W, H       int
	X0, X1     float64
	Ticks      []tick
	WarmUp     *span
	Deploys    []marker
	Rows       []row
	AxisY      float64
	DeployTopY float64
	// Label describes the plot for screen readers; WarmUpLabel the shaded
	// range before from.
	Label, WarmUpLabel string
}

type span struct{ X, W float64 }

type row struct {
	Y        float64
	Label    string
	Anchor   string
	Class    string
	Bar      span
	Detected float64
	Title    string
}

// Timeline lays out findings and deploys over [start, end]; the range
// before from is shaded as warm-up (from ≤ start: none).
func Timeline(start, from, end time.Time, deploys []Deploy, items []FindingView) TimelineView {
	t0, t1 := start, end
	if !t1.After(t0) {
		t1 = t0.Add(time.Hour)
	}
	tl := TimelineView{W: timelineW, X0: 190, X1: timelineW - 16, DeployTopY: 8,
		Label: "Findings and deploys over the range", WarmUpLabel: "warm-up"}
	x := func(t time.Time) float64 {
		if t.Before(t0) {
			t = t0
		}
		if t.After(t1) {
			t = t1
		}
		return round1(tl.X0 + (tl.X1-tl.X0)*float64(t.Sub(t0))/float64(t1.Sub(t0)))
	}
	tl.AxisY = timelineTop + float64(max(1, len(items)))*timelineRowH + 6
	tl.H = int(tl.AxisY) + 26
	if from.After(t0) {
		tl.WarmUp = &span{X: tl.X0, W: x(from) - tl.X0}
	}
	for _, t := range timeTicks(t0, t1, 8) {
		label := t.UTC().Format("15:04")
		if t1.Sub(t0) > 20*time.Hour {
			label = t.UTC().Format("Jan 2 15:04")
		}
		tl.Ticks = append(tl.Ticks, tick{Pos: x(t), Label: label})
	}
	for _, dp := range deploys {
		if dp.At.Before(t0) || dp.At.After(t1) {
			continue
		}
		tl.Deploys = append(tl.Deploys, marker{X: x(dp.At), Class: "deploy-" + scopeClass(dp.Scope),
			Label: "deploy: " + DeployText(dp.Scope, dp.Group, dp.Version, dp.At)})
	}
	for i, it := range items {
		f := it.Finding
		start := f.StartedAt
		if start.IsZero() || start.After(f.DetectedAt) {
			start = f.DetectedAt
		}
		end := t1
		if f.ResolvedAt != nil {
			end = *f.ResolvedAt
		}
		r := row{
			Y: timelineTop + float64(i)*timelineRowH, Label: string(f.Kind), Anchor: it.Anchor,
			Class: "sev-" + severityClass(f.Severity), Detected: x(f.DetectedAt),
			Bar:   span{X: x(start), W: max(2, x(end)-x(start))},
			Title: fmt.Sprintf("%s: onset %s, detected %s", f.Kind, TimeText(start), TimeText(f.DetectedAt)),
		}
		if f.ResolvedAt != nil {
			r.Title += ", resolved " + TimeText(*f.ResolvedAt)
		}
		tl.Rows = append(tl.Rows, r)
	}
	return tl
}

func severityClass(s string) string {
	switch s {
	case "critical", "warning", "info":
		return s
	}
	return "other"
}

// niceScale returns an axis maximum of at least 1.1 × top, a whole number
// of "nice" steps (1, 2, 2.5 or 5 × 10^k, about four of them), and the ticks.
func niceScale(top float64) (float64, []float64) {
	if top <= 0 || math.IsNaN(top) || math.IsInf(top, 0) {
		top = 1
	}
	want := top * 1.1
	raw := want / 4
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	n := int(math.Ceil(want/step - 1e-9))
	ticks := make([]float64, 0, n+1)
	for i := range n + 1 {
		ticks = append(ticks, float64(i)*step)
	}
	return ticks[n], ticks
}

// timeTicks returns round times between t0 and t1, about n of them.
func timeTicks(t0, t1 time.Time, n int) []time.Time {
	span := t1.Sub(t0)
	steps := []time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour}
	step := steps[len(steps)-1]
	for _, s := range steps {
		if span/s <= time.Duration(n) {
			step = s
			break
		}
	}
	var out []time.Time
	for t := t0.Truncate(step); !t.After(t1); t = t.Add(step) {
		if !t.Before(t0) {
			out = append(out, t)
		}
	}
	return out
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

// Num writes an integer with thin separators: 1 234 567.
func Num(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u202f")
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func byteSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return strconv.FormatInt(n, 10) + " B"
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + " " + units[i]
}

// TimeText is a UTC time to the second, "—" for the zero time.
func TimeText(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
}

// DurText rounds a duration for people.
func DurText(d time.Duration) string {
	switch {
	case d >= time.Hour:
		return d.Round(time.Minute).String()
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}

// FloatText prints a measurement with about three significant digits.
func FloatText(f float64) string {
	switch {
	case math.IsNaN(f):
		return "—"
	case math.IsInf(f, 1):
		return "∞"
	case f == 0:
		return "0"
	case math.Abs(f) < 1e-3 || math.Abs(f) >= 1e6:
		return strconv.FormatFloat(f, 'g', 3, 64)
	case math.Abs(f) >= 100:
		return strconv.FormatFloat(f, 'f', 0, 64)
	default:
		return strconv.FormatFloat(f, 'g', 3, 64)
	}
}

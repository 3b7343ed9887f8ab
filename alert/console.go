package alert

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/redact"
)

// Console prints findings for a person at a terminal, one short block per
// state change. Text from events is cleaned of control characters so a
// crafted error message cannot rewrite the terminal.
type Console struct {
	mu sync.Mutex
	w  io.Writer
}

// NewConsole writes to w.
func NewConsole(w io.Writer) *Console { return &Console{w: w} }

// Notify prints the changed findings (Sink).
func (c *Console) Notify(changed, _ []detect.Finding) error {
	if len(changed) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, f := range changed {
		FormatText(&b, f)
	}
	_, err := io.WriteString(c.w, b.String())
	if err != nil {
		return fmt.Errorf("write findings: %w", err)
	}
	return nil
}

// FormatText writes a finding as a few readable lines.
func FormatText(b *strings.Builder, f detect.Finding) {
	f = redact.Finding(f)
	state := strings.ToUpper(string(f.State))
	at := f.DetectedAt
	if f.State == detect.StateResolved && f.ResolvedAt != nil {
		at = *f.ResolvedAt
	}
	fmt.Fprintf(b, "[%s] %s (%s) at %s  id=%s\n", state, f.Kind, f.Severity, at.UTC().Format(time.RFC3339), f.ID)
	fmt.Fprintf(b, "  %s\n", redact.Clean(f.Summary, 600, false))
	if len(f.Wikis) > 0 {
		fmt.Fprintf(b, "  wikis: %s\n", redact.Clean(wikisAnnotation(f.Wikis), 300, false))
	}
	var extra []string
	if f.Deploy != nil {
		extra = append(extra, "follows "+deployText(f.Deploy))
	}
	if f.Evidence.SharedData != "" {
		extra = append(extra, "shared data: "+redact.Clean(sharedDataText(f.Evidence), 200, false))
	}
	extra = append(extra, "onset "+f.StartedAt.UTC().Format("15:04:05"))
	fmt.Fprintf(b, "  %s\n", strings.Join(extra, " · "))
	if f.Evidence.Exemplar != "" && f.State != detect.StateResolved {
		fmt.Fprintf(b, "  exemplar: %s\n", redact.Clean(f.Evidence.Exemplar, 200, false))
	}
	if f.Evidence.Note != "" {
		fmt.Fprintf(b, "  note: %s\n", redact.Clean(f.Evidence.Note, 300, false))
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

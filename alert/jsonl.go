package alert

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/redact"
)

// JSONL writes each finding once, when it first fires: the findings JSONL
// contract of docs/design.md section 6 (replay --output). encoding/json escapes <, > and &
// so the lines are safe to embed in HTML.
type JSONL struct {
	mu      sync.Mutex
	w       io.Writer
	written map[string]bool
}

// NewJSONL writes to w.
func NewJSONL(w io.Writer) *JSONL { return &JSONL{w: w, written: map[string]bool{}} }

// Notify writes the changed findings that fire for the first time (Sink).
func (j *JSONL) Notify(changed, _ []detect.Finding) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, f := range changed {
		if f.State != detect.StateFiring || j.written[f.ID] {
			continue
		}
		j.written[f.ID] = true
		// The findings file is shared like the report: redacted.
		b, err := json.Marshal(redact.Finding(f))
		if err != nil {
			return fmt.Errorf("encode finding %s: %w", f.ID, err)
		}
		b = append(b, '\n')
		if _, err := j.w.Write(b); err != nil {
			return fmt.Errorf("write finding %s: %w", f.ID, err)
		}
	}
	return nil
}

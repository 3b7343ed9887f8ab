package detect

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

func wikisOf(top []WikiCount) []string {
	out := make([]string, 0, len(top))
	for _, t := range top {
		out = append(out, t.Wiki)
	}
	sort.Strings(out)
	return out
}

func capTop(top []WikiCount, n int) []WikiCount {
	if len(top) > n {
		return append([]WikiCount(nil), top[:n]...)
	}
	return append([]WikiCount(nil), top...)
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func fmtRatio(r float64) string {
	if math.IsInf(r, 1) {
		return "∞"
	}
	return strconv.FormatFloat(r, 'g', 3, 64)
}

// short makes a one-line excerpt of at most about n bytes for a summary.
func short(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

func minutes(ns int64) string {
	m := float64(ns) / 60e9
	if m < 1 {
		return fmt.Sprintf("%.0fs", m*60)
	}
	return fmt.Sprintf("%.0f min", m)
}

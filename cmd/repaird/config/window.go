package config

import (
	"fmt"
	"regexp"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Window is a daily time window in UTC, "HH:MM-HH:MM", in which repair
// runs may work; an End before Start wraps midnight ("22:00-04:00"). The
// zero Window is always open.
type Window struct {
	// Start and End are minutes after midnight UTC; set is false for the
	// zero (always open) window.
	Start, End int
	set        bool
}

// A window is the whole value, "HH:MM-HH:MM" and nothing else: hours 0-23
// (one digit or two), minutes 00-59, and 24:00 for the midnight that ends
// the day. windowRE is anchored at both ends: fmt.Sscanf, used before,
// ignored whatever followed, and "22:00-04:00 CET" was read as UTC.
const clockRE = `([01]?[0-9]|2[0-3]):([0-5][0-9])|(24):(00)`

var (
	windowRE = regexp.MustCompile(`^(?:` + clockRE + `)-(?:` + clockRE + `)$`)
	// windowShapeRE and windowPrefixRE only explain a refusal: a time out
	// of range, or something after the window.
	windowShapeRE  = regexp.MustCompile(`^(\d+):(\d+)-(\d+):(\d+)$`)
	windowPrefixRE = regexp.MustCompile(`^\d{1,2}:\d{2}-\d{1,2}:\d{2}`)
)

// ParseWindow parses "HH:MM-HH:MM" (UTC): the whole of s, nothing before
// or after it.
func ParseWindow(s string) (Window, error) {
	m := windowRE.FindStringSubmatch(s)
	if m == nil {
		return Window{}, windowError(s)
	}
	// m[1:5] is the start (hour and minute, or 24 and 00), m[5:9] the end.
	w := Window{Start: clockMinutes(m[1:5]), End: clockMinutes(m[5:9]), set: true}
	if w.Start == w.End {
		return Window{}, fmt.Errorf("window %q is empty: its start and end are the same", s)
	}
	return w, nil
}

// clockMinutes returns the minutes after midnight of one side of a
// windowRE match: its hour and minute groups, or the 24:00 ones.
func clockMinutes(g []string) int {
	h, m := g[0], g[1]
	if h == "" {
		h, m = g[2], g[3]
	}
	hv, _ := strconv.Atoi(h)
	mv, _ := strconv.Atoi(m)
	return hv*60 + mv
}

// windowError says why s is not a window.
func windowError(s string) error {
	const want = "must be HH:MM-HH:MM in UTC, e.g. 01:00-06:00"
	if p := windowPrefixRE.FindString(s); p != "" && p != s {
		return fmt.Errorf("window %q %s, and nothing else: %q follows %q (a window has no zone, seconds or am/pm: write it in UTC)", s, want, s[len(p):], p)
	}
	if windowShapeRE.MatchString(s) {
		return fmt.Errorf("window %q %s: hours are 0-23 and minutes 00-59 (24:00 is the midnight that ends the day)", s, want)
	}
	return fmt.Errorf("window %q %s", s, want)
}

// UnmarshalYAML reads "HH:MM-HH:MM".
func (w *Window) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a window is a string like \"01:00-06:00\" (UTC)", node.Line)
	}
	if node.Value == "" {
		*w = Window{}
		return nil
	}
	p, err := ParseWindow(node.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", node.Line, err)
	}
	*w = p
	return nil
}

// IsSet reports whether the window limits anything.
func (w Window) IsSet() bool { return w.set }

// String returns "HH:MM-HH:MM" ("" for the always-open window).
func (w Window) String() string {
	if !w.set {
		return ""
	}
	return fmt.Sprintf("%02d:%02d-%02d:%02d", w.Start/60, w.Start%60, w.End/60, w.End%60)
}

// MarshalText writes the window as String does.
func (w Window) MarshalText() ([]byte, error) { return []byte(w.String()), nil }

// Open reports whether t is inside the window.
func (w Window) Open(t time.Time) bool {
	if !w.set {
		return true
	}
	t = t.UTC()
	m := t.Hour()*60 + t.Minute()
	if w.Start < w.End {
		return m >= w.Start && m < w.End
	}
	return m >= w.Start || m < w.End
}

// Next returns the next change of Open after t: when the window closes if
// it is open at t, when it opens otherwise (the zero time for the
// always-open window).
func (w Window) Next(t time.Time) time.Time {
	if !w.set {
		return time.Time{}
	}
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	edge := w.Start
	if w.Open(t) {
		edge = w.End
	}
	at := day.Add(time.Duration(edge) * time.Minute)
	for !at.After(t) {
		at = at.Add(24 * time.Hour)
	}
	return at
}

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

// windowRE is the whole of a window: nothing before or after it (a zone
// such as "CET" after it was ignored, and the window read as UTC).
var windowRE = regexp.MustCompile(`^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$`)

// ParseWindow parses "HH:MM-HH:MM" (UTC).
func ParseWindow(s string) (Window, error) {
	m := windowRE.FindStringSubmatch(s)
	var sh, sm, eh, em int
	if m != nil {
		sh, _ = strconv.Atoi(m[1])
		sm, _ = strconv.Atoi(m[2])
		eh, _ = strconv.Atoi(m[3])
		em, _ = strconv.Atoi(m[4])
	}
	if m == nil || sh < 0 || sh > 24 || eh < 0 || eh > 24 || sm < 0 || sm > 59 || em < 0 || em > 59 || sh*60+sm > 1440 || eh*60+em > 1440 {
		return Window{}, fmt.Errorf("window %q must be HH:MM-HH:MM in UTC, e.g. 01:00-06:00", s)
	}
	w := Window{Start: sh*60 + sm, End: eh*60 + em, set: true}
	if w.Start == w.End {
		return Window{}, fmt.Errorf("window %q is empty: its start and end are the same", s)
	}
	return w, nil
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

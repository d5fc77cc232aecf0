package config

import "time"

// Watermark is the watermark: section: how repaird computes and publishes
// each region's convergence watermark (docs/design.md, "The convergence
// watermark").
type Watermark struct {
	// Interval is how often the watermark is computed. Default
	// DefaultWatermarkInterval (250ms); negative: never (no watermark
	// worker).
	Interval time.Duration `yaml:"interval"`
	// ClockSkew bounds how far behind real time a store's clock may run.
	// A store registers before its first write with a version from its
	// own clock; repaird keeps every watermark at least ClockSkew below
	// the moment it read the registrations, so that a store registering
	// just after that read cannot have written below the watermark.
	// Default DefaultClockSkew (500ms). Too small for the real skew, and
	// a store that has just started could have its first writes counted
	// as held before they are.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// Timeout bounds each read and write of a computation in one region
	// (default DefaultWatermarkTimeout, 1s). The regions are read and
	// written concurrently, so an unreachable or slow region delays the
	// others' watermarks by at most about three timeouts a computation,
	// never by its requests' own timeouts.
	Timeout time.Duration `yaml:"timeout"`
}

// Defaults of the watermark: section.
const (
	// DefaultWatermarkInterval is the default watermark.interval.
	DefaultWatermarkInterval = 250 * time.Millisecond
	// DefaultClockSkew is the default watermark.clock_skew.
	DefaultClockSkew = 500 * time.Millisecond
	// DefaultWatermarkTimeout is the default watermark.timeout.
	DefaultWatermarkTimeout = time.Second
)

// Every is the interval in effect: 0 when the worker does not run.
func (w Watermark) Every() time.Duration {
	switch {
	case w.Interval < 0:
		return 0
	case w.Interval == 0:
		return DefaultWatermarkInterval
	default:
		return w.Interval
	}
}

// Skew is the clock skew bound in effect.
func (w Watermark) Skew() time.Duration {
	if w.ClockSkew == 0 {
		return DefaultClockSkew
	}
	return w.ClockSkew
}

// RequestTimeout is the timeout in effect for one region's read or write.
func (w Watermark) RequestTimeout() time.Duration {
	if w.Timeout == 0 {
		return DefaultWatermarkTimeout
	}
	return w.Timeout
}

func (w Watermark) validate() error {
	switch {
	case w.Interval > 0 && w.Interval < 50*time.Millisecond:
		return invalid("watermark.interval must be at least 50ms, or negative to compute no watermark (got %v)", w.Interval)
	case w.Timeout < 0 || (w.Timeout > 0 && w.Timeout < 10*time.Millisecond):
		return invalid("watermark.timeout must be at least 10ms (got %v)", w.Timeout)
	case w.ClockSkew < 0:
		return invalid("watermark.clock_skew must not be negative (got %v)", w.ClockSkew)
	}
	return nil
}

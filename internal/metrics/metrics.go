// Package metrics holds what Tidemark's packages share about their
// Prometheus metrics: a collector made of collectors (Set), so that each
// package's metrics type exports one prometheus.Collector for the user to
// register (no global registry).
package metrics

import "github.com/prometheus/client_golang/prometheus"

// Set is a prometheus.Collector made of other collectors.
type Set []prometheus.Collector

// Describe implements prometheus.Collector.
func (s Set) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range s {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (s Set) Collect(ch chan<- prometheus.Metric) {
	for _, c := range s {
		c.Collect(ch)
	}
}

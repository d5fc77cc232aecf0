package repair

import "sync"

// Dense divergence across segments. When most of the rows of the segments
// a run has descended were scanned anyway, the aggregates asked on the way
// were spent for nothing: the digest scan reads those rows again, and the
// servers read them once more for each level of the descent. A run then
// digest-scans its next segments outright, still descending one segment in
// densityProbeEvery so that it notices the divergence thinning out.
const (
	// densityWindow is how many of the latest descended segments the
	// estimate covers; densityMinSegments how many it needs.
	densityWindow      = 8
	densityMinSegments = 4
	// densityScanFraction is the mean share of a segment's rows scanned
	// above which segments are scanned outright.
	densityScanFraction = 0.5
	// densityProbeEvery: one segment in this many is still descended.
	densityProbeEvery = 8
)

// density is a run's record of how much of its descended segments it
// scanned.
type density struct {
	mu     sync.Mutex
	recent []float64 // scanned share of the latest descended segments
	asked  int       // segments that asked whether to descend
}

// descend reports whether the next segment should ask its fingerprints.
func (d *density) descend() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.asked++
	if len(d.recent) < densityMinSegments || d.asked%densityProbeEvery == 0 {
		return true
	}
	var sum float64
	for _, f := range d.recent {
		sum += f
	}
	return sum/float64(len(d.recent)) <= densityScanFraction
}

// record notes that a descended segment of rows rows had scanned of them
// scanned (0 for a segment in sync).
func (d *density) record(scanned, rows int64) {
	if rows <= 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.recent = append(d.recent, min(float64(scanned)/float64(rows), 1))
	if len(d.recent) > densityWindow {
		d.recent = d.recent[len(d.recent)-densityWindow:]
	}
}

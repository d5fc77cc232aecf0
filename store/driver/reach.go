package driver

import "sync"

// Reach is how a Factory tells store.Open whether its region answers at
// all while the Factory is still connecting. Open waits for the home
// region's attempt and for every region that answers; a region whose
// Factory is watching and has heard nothing by the time the home region
// is done — a region whose network drops packets, a proxy that accepts
// and stays silent — is left to connect in the background, so that a
// service does not wait Config.ConnectTimeout to start during a remote
// outage. A Factory that never calls Watching is waited for: Open cannot
// tell it is silent.
//
// The default CQL factory watches the bytes arriving on its connections
// (any byte from any node of the region, TLS handshakes included). The
// methods are safe for concurrent use and on a nil *Reach.
type Reach struct {
	watch, answer     sync.Once
	watched, answered chan struct{}
}

// NewReach returns a Reach that has neither been watched nor answered.
func NewReach() *Reach {
	return &Reach{watched: make(chan struct{}), answered: make(chan struct{})}
}

// Watching declares that the Factory will call Answered as soon as the
// region answers; until then the region counts as silent.
func (r *Reach) Watching() {
	if r != nil {
		r.watch.Do(func() { close(r.watched) })
	}
}

// Answered reports that the region has answered (a byte arrived from one
// of its nodes). Calls after the first do nothing.
func (r *Reach) Answered() {
	if r != nil {
		r.answer.Do(func() { close(r.answered) })
	}
}

// WatchedChan is closed once Watching has been called.
func (r *Reach) WatchedChan() <-chan struct{} { return r.watched }

// Silent reports whether the Factory is watching and the region has not
// answered.
func (r *Reach) Silent() bool {
	if r == nil {
		return false
	}
	select {
	case <-r.answered:
		return false
	default:
	}
	select {
	case <-r.watched:
		return true
	default:
		return false
	}
}

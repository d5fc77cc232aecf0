package wait

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestCloseAllWaitsForEverything(t *testing.T) {
	var mu sync.Mutex
	var closed []string
	mk := func(name string, err error) Closer {
		return Closer{Name: name, Close: func() error {
			mu.Lock()
			closed = append(closed, name)
			mu.Unlock()
			return err
		}}
	}
	boom := errors.New("boom")
	err := CloseAll(context.Background(), 0, "test", []Closer{mk("a", nil), mk("b", boom), mk("c", nil)}, nil)
	if len(closed) != 3 {
		t.Fatalf("closed %v, want all three", closed)
	}
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "b: boom") {
		t.Fatalf("err %v, want b's error named", err)
	}
	if errors.Is(err, ErrStillClosing) {
		t.Fatalf("err %v claims something is still closing", err)
	}
}

func TestCloseAllNamesStragglers(t *testing.T) {
	release := make(chan struct{})
	lateCh := make(chan string, 2)
	stuck := func(name string) Closer {
		return Closer{Name: name, Close: func() error { <-release; return nil }}
	}
	ok := Closer{Name: "ok", Close: func() error { return nil }}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := CloseAll(ctx, 0, "store: region connections", []Closer{stuck("x"), ok, stuck("y")},
		func(name string, _ error) { lateCh <- name })
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("CloseAll took %v with a 50ms context", d)
	}
	var sce *StillClosingError
	if !errors.As(err, &sce) || !errors.Is(err, ErrStillClosing) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want a StillClosingError wrapping the deadline", err)
	}
	if strings.Join(sce.Stragglers, ",") != "x,y" || sce.What != "store: region connections" {
		t.Fatalf("stragglers %v (what %q), want x,y", sce.Stragglers, sce.What)
	}
	if !strings.Contains(err.Error(), "x, y") {
		t.Errorf("message %q does not name both", err)
	}
	close(release)
	got := map[string]bool{<-lateCh: true, <-lateCh: true}
	if !got["x"] || !got["y"] {
		t.Errorf("late closes reported %v, want x and y", got)
	}
}

func TestCloseAllGraceAfterEndedContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	quick := Closer{Name: "quick", Close: func() error { time.Sleep(10 * time.Millisecond); return nil }}
	never := make(chan struct{})
	defer close(never)
	err := CloseAll(ctx, time.Second, "t", []Closer{quick, Done("never", never)}, nil)
	var sce *StillClosingError
	if !errors.As(err, &sce) || len(sce.Stragglers) != 1 || sce.Stragglers[0] != "never" {
		t.Fatalf("err %v, want only the one that never closes", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v does not carry the context's error", err)
	}
}

func TestWithin(t *testing.T) {
	if err := Within(time.Second, "t", Closer{Name: "fast", Close: func() error { return nil }}); err != nil {
		t.Fatal(err)
	}
	never := make(chan struct{})
	defer close(never)
	err := Within(20*time.Millisecond, "t", Done("slow", never))
	if !errors.Is(err, ErrStillClosing) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waited 20ms") {
		t.Fatalf("err %v", err)
	}
}

func TestBackoffBounds(t *testing.T) {
	b := NewBackoff(100*time.Millisecond, time.Second)
	var last time.Duration
	for i := range 20 {
		d := b.Next()
		if d < 50*time.Millisecond || d > time.Second {
			t.Fatalf("delay %d = %v, outside [50ms, 1s]", i, d)
		}
		last = d
	}
	if last < 500*time.Millisecond {
		t.Errorf("after 20 attempts the delay is %v, want near the ceiling", last)
	}
	b.Reset()
	if d := b.Next(); d > 150*time.Millisecond {
		t.Errorf("after Reset the delay is %v, want about 100ms", d)
	}
	if d := NewBackoff(time.Second, time.Millisecond).Next(); d > time.Second || d < 500*time.Millisecond {
		t.Errorf("ceiling below first: %v", d)
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep on a live context reported it ended")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep on an ended context reported it live")
	}
	if time.Since(start) > time.Second {
		t.Fatal("Sleep did not return when the context ended")
	}
}

func TestTokensMoreThanBurst(t *testing.T) {
	lim := rate.NewLimiter(rate.Inf, 3)
	if err := Tokens(context.Background(), lim, 10); err != nil {
		t.Fatalf("Tokens(10) with burst 3: %v", err)
	}
	if err := Tokens(context.Background(), nil, 10); err != nil {
		t.Fatal(err)
	}
	slow := rate.NewLimiter(1, 1)
	slow.AllowN(time.Now(), 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := Tokens(ctx, slow, 5); err == nil {
		t.Fatal("Tokens(5) at 1/s finished within 50ms")
	}
}

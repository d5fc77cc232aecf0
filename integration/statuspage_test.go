package integration

// The status page in a real headless browser (Debian's chromium, driven by
// chromedp): it renders the live state of a running daemon on the real
// environment — regions, the namespace's run and its progress — and its
// Pause and Resume buttons steer the run with the token typed into the
// page. Screenshots are saved as test artifacts (the test logs where).

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tidemark/tidemark/cmd/repaird/daemon"
)

// browserPath finds chromium; without one the test fails under CI=true
// (`make test` installs Debian's chromium first) and is skipped otherwise.
func browserPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium on PATH: install it (apt-get install -y chromium; `make test` does)"
	if inCI() {
		t.Fatal(msg + " — CI=true, so this is a failure")
	}
	t.Skip(msg)
	return ""
}

// artifactDir is where tests leave files for people to look at:
// $TIDEMARK_ARTIFACTS, or tidemark-artifacts in the temporary directory.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TIDEMARK_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "tidemark-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestStatusPageInBrowser(t *testing.T) {
	t.Parallel()
	start := time.Now()
	chromium := browserPath(t)
	f := newRepairFixture(t, "a", "b")
	onlyInA(t, f, "s", 4000, time.Now().UnixMicro())
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(controlToken), 0o600); err != nil {
		t.Fatal(err)
	}
	// 4 000 row reads at 100 rows/s per region: the run lasts about 20 s,
	// long enough to be paused from the page whatever the fingerprints
	// save (the rate limit is what paces it).
	cd := startControlDaemon(t, f, tokenFile, "  segments: 16\n  rows_per_second: 100\n  interval: 1h\n")

	opts := append(chromedp.DefaultExecAllocatorOptions[:0:0],
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(bctx, 3*time.Minute)
	defer cancel()

	nsRow := fmt.Sprintf(`tr[data-namespace=%q]`, repairNS)
	if err := chromedp.Do(ctx, chromedp.Navigate(cd.url+"/"), chromedp.WaitVisible(chromedp.CSS(`tr[data-region="a"]`)), chromedp.WaitVisible(chromedp.CSS(nsRow))); err != nil {
		t.Fatalf("load the status page: %v", err)
	}
	// The page refreshes itself: wait for the live run and its progress.
	// The text is read in one script, and a failed read is only a retry of
	// eventually.
	text := func(sel string) string {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.innerText : ""; })()`, sel)))
		if err != nil {
			return fmt.Sprintf("(read %s: %v)", sel, err)
		}
		return s
	}
	eventually(t, 60*time.Second, "the page shows the running run with progress", func() error {
		runs, progress := text(nsRow+" td.runs"), text(nsRow+" .segments")
		if !strings.Contains(runs, "running") || strings.HasPrefix(progress, "0/") || !strings.HasSuffix(progress, "/16") {
			return fmt.Errorf("runs %q, progress %q", runs, progress)
		}
		return nil
	})
	// A row may still show the state of the page's first render: the rows
	// are read until they settle.
	for _, r := range []string{"a", "b"} {
		eventually(t, 15*time.Second, "region "+r+" shown connected", func() error {
			if got := text(fmt.Sprintf(`tr[data-region=%q]`, r)); !strings.Contains(got, "connected") || strings.Contains(got, "not connected") {
				return fmt.Errorf("region %s row: %q", r, got)
			}
			return nil
		})
	}
	shot := func(name string) {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		p := filepath.Join(artifactDir(t), name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot of the status page: %s (%d bytes)", p, len(png))
	}
	shot("statuspage-running.png")

	// A refresh updates the page in place: the Pause button found before
	// the progress moves is the same node after it (a page that replaced
	// its tables replaced the button, and a click pressed during a refresh
	// was lost; chromedp's Click failed "Could not find node with given id").
	pauseSel := nsRow + ` button[data-action="pause"]`
	before, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(() => { window.tmPause = document.querySelector(%q); return window.tmPause ? document.querySelector(%q).innerText : ""; })()`,
		pauseSel, nsRow+" .segments")))
	if err != nil || before == "" {
		t.Fatalf("find the Pause button: progress %q, %v", before, err)
	}
	eventually(t, 30*time.Second, "the progress moves on from "+before, func() error {
		if p := text(nsRow + " .segments"); p == before || !strings.HasSuffix(p, "/16") {
			return fmt.Errorf("progress %q", p)
		}
		return nil
	})
	same, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`document.contains(window.tmPause) && window.tmPause === document.querySelector(%q)`, pauseSel)))
	if err != nil {
		t.Fatal(err)
	}
	if !same {
		t.Fatalf("after the progress moved on from %s the Pause button is another node: the refresh replaced it", before)
	}

	// Pause with the page's button, the token typed into the page.
	var cur daemon.RunView
	cd.api(t, "GET", "/v1/namespaces/"+repairNS+"/runs/current", "", "", &cur)
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("token"), controlToken),
		chromedp.Click(chromedp.CSS(pauseSel)),
	); err != nil {
		t.Fatalf("click Pause: %v", err)
	}
	eventually(t, 30*time.Second, "the page shows the run paused", func() error {
		if s := text(nsRow + " td.runs"); !strings.Contains(s, "paused") {
			return fmt.Errorf("runs %q", s)
		}
		return nil
	})
	var v daemon.RunView
	cd.api(t, "GET", "/v1/namespaces/"+repairNS+"/runs/current", "", "", &v)
	if v.RunID != cur.RunID || v.State != "paused" {
		t.Fatalf("after the Pause button the run is %+v", v)
	}
	shot("statuspage-paused.png")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(nsRow+` button[data-action="resume"]`))); err != nil {
		t.Fatalf("click Resume: %v", err)
	}
	eventually(t, 30*time.Second, "the run works again", func() error {
		cd.api(t, "GET", "/v1/namespaces/"+repairNS+"/runs/current", "", "", &v)
		if v.State != "running" && v.RunID == cur.RunID {
			return fmt.Errorf("state %q", v.State)
		}
		return nil
	})
	t.Logf("status page test: %v", time.Since(start).Round(time.Second))
}

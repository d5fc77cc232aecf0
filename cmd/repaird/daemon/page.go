package daemon

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"time"
)

// The status page: one HTML page embedded in the binary (no CDN, no
// framework), rendered on the server; a few lines of its own script
// refresh it every two seconds and send the buttons' requests (pause,
// resume, abort, start) with the bearer token typed into the page (kept in
// the tab's sessionStorage only).

//go:embed page/index.html
var pageFS embed.FS

var pageTemplate = template.Must(template.New("index.html").Funcs(template.FuncMap{
	"pct": func(done, total int) int {
		if total <= 0 {
			return 0
		}
		return 100 * done / total
	},
	"ratio": func(f float64) int { return int(100 * f) },
	"since": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return time.Since(t).Round(time.Second).String()
	},
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"num": func(f float64) string { return fmt.Sprintf("%.0f", f) },
	"lag": func(f *float64) string {
		if f == nil {
			return "unknown"
		}
		return fmt.Sprintf("%.0f", *f)
	},
	"rate": func(f float64) string { return fmt.Sprintf("%.1f/s", f) },
}).ParseFS(pageFS, "page/index.html"))

// pageData is what the page shows.
type pageData struct {
	Status     Status
	Regions    []pageRegion
	Namespaces []pageNamespace
	Fragment   bool
}

type pageRegion struct {
	Name      string
	Connected bool
	Error     string
	Hint      *HintView
}

type pageNamespace struct {
	Name   string
	Status *NamespaceStatus
	Runs   []RunView
	Error  string
}

func (d *Daemon) pageData(ctx context.Context) pageData {
	st := d.Status()
	p := pageData{Status: st}
	hintsByRegion := map[string]*HintView{}
	for i := range st.Hints {
		hintsByRegion[st.Hints[i].Region] = &st.Hints[i]
	}
	for _, r := range d.cfg.Regions {
		rs := st.Regions[r.Name]
		p.Regions = append(p.Regions, pageRegion{Name: r.Name, Connected: rs.Connected, Error: rs.Error, Hint: hintsByRegion[r.Name]})
	}
	names := d.cfg.Names()
	sort.Strings(names)
	for _, ns := range names {
		pn := pageNamespace{Name: ns, Status: st.Namespaces[ns]}
		runs, err := d.listRuns(ctx, ns, 0)
		if err != nil {
			pn.Error = err.Error()
		}
		pn.Runs = runs
		p.Namespaces = append(p.Namespaces, pn)
	}
	return p
}

func (d *Daemon) routePage(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		data := d.pageData(ctx)
		data.Fragment = r.URL.Query().Get("fragment") == "1"
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'")
		name := "page"
		if data.Fragment {
			name = "live"
		}
		if err := pageTemplate.ExecuteTemplate(w, name, data); err != nil {
			d.log.Warn("repaird: status page", "err", err)
		}
	})
}

package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/cmd/repaird/daemon"
)

// The commands that talk to a running daemon over its control API:
//
//	repaird status  [--namespace NS]
//	repaird runs    [--namespace NS] [--limit N]
//	repaird start   --namespace NS [--token-range START:END] [--regions a,c]
//	repaird pause   --namespace NS [--run ID]
//	repaird resume  --namespace NS [--run ID]
//	repaird abort   --namespace NS [--run ID]
//	repaird tune    --namespace NS [--run ID] [--intensity F] [--rows-per-second N]
//	repaird hints
//
// Each finds the daemon with --addr (or REPAIRD_ADDR), else from --config
// (its http.listen, http.tls and token), else http://127.0.0.1:9190, and
// sends the token of --token-file, REPAIRD_TOKEN or the config. Output is
// a table; -o json prints the API's JSON.

// DefaultAddr is where the client commands look for the daemon without
// --addr or --config.
const DefaultAddr = "http://127.0.0.1:9190"

// clientTimeout bounds one request of a client command.
const clientTimeout = 60 * time.Second

type clientFlags struct {
	addr, config, tokenFile, caFile, output string
}

func (f *clientFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.addr, "addr", "", "the daemon's URL (default $REPAIRD_ADDR, the config's http.listen, or "+DefaultAddr+")")
	cmd.Flags().StringVar(&f.config, "config", "", "the daemon's configuration file: its address, TLS and token")
	cmd.Flags().StringVar(&f.tokenFile, "token-file", "", "file holding the bearer token (default $REPAIRD_TOKEN, or the config's)")
	cmd.Flags().StringVar(&f.caFile, "ca-file", "", "PEM file of the CA that signed the daemon's certificate (https)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "table", "output format: table or json")
}

// client calls one daemon's API.
type client struct {
	base  string
	token string
	http  *http.Client
}

// APIStatusError is a non-2xx answer of the daemon.
type APIStatusError struct {
	Code    int
	Message string
}

func (e *APIStatusError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

func newClient(env *Env, f *clientFlags) (*client, error) {
	if f.output != "table" && f.output != "json" {
		return nil, usageError{fmt.Errorf("-o %q: want table or json", f.output)}
	}
	c := &client{base: DefaultAddr}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.config != "" {
		cfg, err := config.Load(f.config)
		if err != nil {
			return nil, err
		}
		host, port, _ := net.SplitHostPort(cfg.HTTP.Listen)
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		scheme := "http"
		if cfg.HTTP.TLS != nil {
			scheme = "https"
		}
		c.base = scheme + "://" + net.JoinHostPort(host, port)
		if c.token, err = cfg.HTTP.Token(); err != nil {
			return nil, err
		}
	}
	if a := env.Getenv("REPAIRD_ADDR"); a != "" {
		c.base = a
	}
	if f.addr != "" {
		c.base = f.addr
	}
	if !strings.Contains(c.base, "://") {
		c.base = "http://" + c.base
	}
	c.base = strings.TrimRight(c.base, "/")
	if t := env.Getenv("REPAIRD_TOKEN"); t != "" {
		c.token = strings.TrimSpace(t)
	}
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		c.token = strings.TrimSpace(string(b))
	}
	if f.caFile != "" {
		pool, err := config.CertPool(f.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		tc.RootCAs = pool
	}
	c.http = &http.Client{Timeout: clientTimeout, Transport: &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment}}
	return c, nil
}

// do sends a request and decodes a 2xx answer into out (and the raw
// body into raw, when not nil).
func (c *client) do(ctx context.Context, method, path string, body, out any, raw *[]byte) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("repaird at %s: %w (is `repaird serve` running there? see --addr and --config)", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return fmt.Errorf("repaird at %s: %w", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		var e daemon.APIError
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return fmt.Errorf("repaird at %s: %s %s: %w", c.base, method, path, &APIStatusError{Code: resp.StatusCode, Message: e.Error})
	}
	if raw != nil {
		*raw = b
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("repaird at %s: %s %s: unreadable answer: %w", c.base, method, path, err)
		}
	}
	return nil
}

// clientCommand is a command that talks to a daemon: its client flags are
// registered, and run gets them.
func clientCommand(use, short string, run func(cmd *cobra.Command, f *clientFlags) error) *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{Use: use, Short: short, Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd, f) }}
	f.register(cmd)
	return cmd
}

func clientCommands(env *Env) []*cobra.Command {
	return []*cobra.Command{
		getCommand(env, "status", "Show a running daemon's status: regions, hint replay, namespaces, warnings", "/v1/status", writeStatus),
		getCommand(env, "hints", "Show a running daemon's hint replay per region: lag, oldest hint's age, rate, dead letters", "/v1/hints", writeHints),
		newRunsCommand(env), newStartCommand(env),
		newSteerCommand(env, "pause", "Pause a run: every process working on it holds (no rows written) until resumed"),
		newSteerCommand(env, "resume", "Resume a paused run"),
		newSteerCommand(env, "abort", "Abort a run: its leases are released and it is abandoned; the next run starts fresh"),
		newTuneCommand(env)}
}

// request runs one API call of a client command and prints the answer:
// as table writes it, or with -o json the API's JSON.
func request[T any](cmd *cobra.Command, env *Env, f *clientFlags, method, path string, body any, table func(io.Writer, T)) error {
	c, err := newClient(env, f)
	if err != nil {
		return err
	}
	var v T
	var raw []byte
	if err := c.do(cmd.Context(), method, path, body, &v, &raw); err != nil {
		return err
	}
	emit(env, f, raw, func(w io.Writer) { table(w, v) })
	return nil
}

// emit prints raw JSON (-o json) or calls table.
func emit(env *Env, f *clientFlags, raw []byte, table func(w io.Writer)) {
	if f.output == "json" {
		env.Stdout.Write(bytes.TrimRight(raw, "\n"))
		fmt.Fprintln(env.Stdout)
		return
	}
	tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
	table(tw)
	_ = tw.Flush()
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// lagText is a hint lag, "?" when it is unknown.
func lagText(lag *float64) string {
	if lag == nil {
		return "?"
	}
	return strconv.FormatFloat(*lag, 'f', 0, 64)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// getCommand is a command that GETs path and prints it with table.
func getCommand[T any](env *Env, use, short, path string, table func(io.Writer, T)) *cobra.Command {
	return clientCommand(use, short, func(cmd *cobra.Command, f *clientFlags) error {
		return request(cmd, env, f, http.MethodGet, path, nil, table)
	})
}

func writeStatus(w io.Writer, st daemon.Status) {
	fmt.Fprintf(w, "daemon\t%s\tstarted %s\tcontrol API %v\n\n", st.Owner, when(st.StartedAt), map[bool]string{true: "enabled", false: "disabled"}[st.Control])
	fmt.Fprintln(w, "REGION\tCONNECTED\tHINT LAG\tOLDEST HINT\tREPLAY\tERROR")
	names := slices.Sorted(maps.Keys(st.Regions))
	hintsOf := map[string]daemon.HintView{}
	for _, h := range st.Hints {
		hintsOf[h.Region] = h
	}
	for _, n := range names {
		r := st.Regions[n]
		lag, oldest, replay := "-", "-", "-"
		if h, ok := hintsOf[n]; ok {
			lag, oldest = lagText(h.Lag), fmt.Sprintf("%.0fs", h.OldestAgeSeconds)
			replay = "flowing"
			if h.Paused {
				replay = "paused"
			} else if !h.Replaying {
				replay = "stopped"
			}
		}
		fmt.Fprintf(w, "%s\t%v\t%s\t%s\t%s\t%s\n", n, r.Connected, lag, oldest, replay, orDash(r.Error))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "NAMESPACE\tRUNNING\tLAST FULL REPAIR\tAGE\tBUDGET USED\tNEXT RUN\tWARNING")
	for _, n := range slices.Sorted(maps.Keys(st.Namespaces)) {
		ns := st.Namespaces[n]
		fmt.Fprintf(w, "%s\t%v\t%s\t%s\t%.0f%%\t%s\t%s\n", n, ns.Running, when(ns.LastFullRepair), orDash(ns.LastFullRepairAge),
			100*ns.BudgetUsed, when(ns.NextRun), orDash(ns.Warning))
	}
	for _, warn := range st.Warnings {
		fmt.Fprintf(w, "\nWARNING: %s\n", warn)
	}
}

func newRunsCommand(env *Env) *cobra.Command {
	var ns string
	var limit int
	cmd := clientCommand("runs [--namespace NS] [--limit N]", "List the runs of a running daemon's namespaces: state, progress, ETA",
		func(cmd *cobra.Command, f *clientFlags) error {
			path := "/v1/runs"
			if ns != "" {
				path = "/v1/namespaces/" + url.PathEscape(ns) + "/runs"
			}
			return request(cmd, env, f, http.MethodGet, path+"?limit="+strconv.Itoa(limit), nil,
				func(w io.Writer, resp daemon.RunsResponse) { writeRuns(w, resp.Runs) })
		})
	cmd.Flags().StringVar(&ns, "namespace", "", "only this namespace")
	cmd.Flags().IntVar(&limit, "limit", 3, "finished runs to list per namespace and kind")
	return cmd
}

func writeRuns(w io.Writer, runs []daemon.RunView) {
	fmt.Fprintln(w, "NAMESPACE\tRUN\tKIND\tSTATE\tSEGMENTS\tROWS DIFFERING\tROWS WRITTEN\tSTARTED\tETA\tSCOPE")
	for _, r := range runs {
		state := r.State
		if len(r.Holds) > 0 {
			state += " (" + strings.Join(r.Holds, ",") + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d/%d\t%d\t%d\t%s\t%s\t%s\n", r.Namespace, r.RunID, r.Kind, state, r.SegmentsDone, r.Segments,
			r.RowsDiffering, r.RowsWritten, when(r.StartedAt), when(r.ETA), orDash(r.Scope))
	}
}

func writeRun(w io.Writer, r daemon.RunView) { writeRuns(w, []daemon.RunView{r}) }

// namespaceCommand is a client command about one namespace: it takes
// --namespace, required.
func namespaceCommand(use, short string, ns *string, run func(cmd *cobra.Command, f *clientFlags) error) *cobra.Command {
	cmd := clientCommand(use, short, func(cmd *cobra.Command, f *clientFlags) error {
		if *ns == "" {
			return usageError{errors.New("--namespace is required")}
		}
		return run(cmd, f)
	})
	cmd.Flags().StringVar(ns, "namespace", "", "the namespace")
	return cmd
}

// parseTokenRange reads "START:END" (the run repairs START < token <= END).
func parseTokenRange(s string) (int64, int64, error) {
	a, b, ok := strings.Cut(s, ":")
	start, err1 := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	end, err2 := strconv.ParseInt(strings.TrimSpace(b), 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("--token-range %q must be START:END, two int64 tokens (the run repairs START < token <= END)", s)
	}
	if end <= start {
		return 0, 0, fmt.Errorf("--token-range %q is empty: END must be greater than START", s)
	}
	return start, end, nil
}

func newStartCommand(env *Env) *cobra.Command {
	var ns, tokens, regions string
	cmd := namespaceCommand("start --namespace NS [--token-range START:END] [--regions a,c]",
		"Start a run now: the namespace's full run, or a partial one over a token range and/or some regions", &ns,
		func(cmd *cobra.Command, f *clientFlags) error {
			var req daemon.StartRequest
			if tokens != "" {
				start, end, err := parseTokenRange(tokens)
				if err != nil {
					return usageError{err}
				}
				req.TokenRange = &struct {
					Start *int64 `json:"start"`
					End   *int64 `json:"end"`
				}{Start: &start, End: &end}
			}
			if regions != "" {
				for _, r := range strings.Split(regions, ",") {
					req.Regions = append(req.Regions, strings.TrimSpace(r))
				}
			}
			return request(cmd, env, f, http.MethodPost, "/v1/namespaces/"+url.PathEscape(ns)+"/runs", req, writeRun)
		})
	cmd.Flags().StringVar(&tokens, "token-range", "", "only the tokens START < t <= END (a partial run)")
	cmd.Flags().StringVar(&regions, "regions", "", "only these regions, comma-separated, at least two (a partial run)")
	return cmd
}

// runFlag is the flag that names a run of the namespace.
func runFlag(cmd *cobra.Command, run *string) {
	cmd.Flags().StringVar(run, "run", "current", "the run's ID (default: the namespace's unfinished full run)")
}

func runPath(ns, run string) string {
	return "/v1/namespaces/" + url.PathEscape(ns) + "/runs/" + url.PathEscape(run)
}

func newSteerCommand(env *Env, action, short string) *cobra.Command {
	var ns, run string
	cmd := namespaceCommand(action+" --namespace NS [--run ID]", short, &ns, func(cmd *cobra.Command, f *clientFlags) error {
		return request(cmd, env, f, http.MethodPost, runPath(ns, run)+"/"+action, struct{}{}, writeRun)
	})
	runFlag(cmd, &run)
	return cmd
}

func newTuneCommand(env *Env) *cobra.Command {
	var ns, run string
	var intensity, rps float64
	cmd := namespaceCommand("tune --namespace NS [--run ID] [--intensity F] [--rows-per-second N]",
		"Change a running run's intensity and rows per second (every process working on it)", &ns,
		func(cmd *cobra.Command, f *clientFlags) error {
			var req daemon.TuneRequest
			if cmd.Flags().Changed("intensity") {
				req.Intensity = &intensity
			}
			if cmd.Flags().Changed("rows-per-second") {
				req.RowsPerSecond = &rps
			}
			if req.Intensity == nil && req.RowsPerSecond == nil {
				return usageError{errors.New("set --intensity and/or --rows-per-second")}
			}
			return request(cmd, env, f, http.MethodPatch, runPath(ns, run), req, writeRun)
		})
	runFlag(cmd, &run)
	cmd.Flags().Float64Var(&intensity, "intensity", 0, "fraction of time the run works, in (0, 1]")
	cmd.Flags().Float64Var(&rps, "rows-per-second", 0, "scan rate in rows per second (0: unlimited)")
	return cmd
}

func writeHints(w io.Writer, resp daemon.HintsResponse) {
	fmt.Fprintln(w, "REGION\tREPLAY\tLAG\tOLDEST HINT\tRATE\tREPLAYED\tDEAD LETTERS")
	for _, h := range resp.Regions {
		state := "stopped"
		switch {
		case h.Paused:
			state = "paused"
		case h.Replaying:
			state = "flowing"
		}
		var dead []string
		for _, r := range slices.Sorted(maps.Keys(h.DeadLetters)) {
			if n := h.DeadLetters[r]; n > 0 {
				dead = append(dead, fmt.Sprintf("%s=%.0f", r, n))
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%.0fs\t%.1f/s\t%.0f\t%s\n", h.Region, state, lagText(h.Lag), h.OldestAgeSeconds, h.ReplayRate, h.Replayed, orDash(strings.Join(dead, " ")))
	}
}

// Package cli is repaird's command line: `repaird repair`, `repaird serve`
// and `repaird validate`, and the commands that talk to a running daemon
// (`repaird status`, `runs`, `start`, `pause`, `resume`, `abort`, `tune`,
// `hints`; client.go). It lives outside package main so that tests run the
// real commands in-process.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tidemark/tidemark/cmd/repaird/config"
	"github.com/tidemark/tidemark/cmd/repaird/daemon"
	"github.com/tidemark/tidemark/internal/schema"
	"github.com/tidemark/tidemark/repair"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// usageError marks a command-line mistake (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// Env is what the commands run with; tests replace the parts they need.
type Env struct {
	Stdout, Stderr io.Writer
	// Connect opens region sessions (nil: cluster.Connect).
	Connect daemon.ConnectFunc
	// Logger for the daemon and repair (nil: logs to Stderr as
	// --log-level and --log-format say, text at info by default).
	Logger *slog.Logger
	// Getenv reads environment variables (nil: os.Getenv); the client
	// commands read REPAIRD_TOKEN and REPAIRD_ADDR.
	Getenv func(string) string
	// ConnectTimeout bounds connecting to all regions at the start of
	// `repaird repair` (default DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// Open, when set, replaces connecting to the configuration's regions in
	// `repaird repair`: it returns the regions and the progress store (tests
	// use in-memory ones).
	Open func(ctx context.Context, cfg *config.Config) ([]repair.Region, repair.ProgressStore, error)
}

// DefaultConnectTimeout bounds connecting to all regions at the start of
// `repaird repair` when Env.ConnectTimeout is zero.
const DefaultConnectTimeout = 30 * time.Second

// Execute runs repaird with args (without the program name) and returns the
// process exit code. Errors are printed to env.Stderr as one line.
func Execute(ctx context.Context, args []string, env Env) int {
	if env.Stdout == nil {
		env.Stdout = io.Discard
	}
	if env.Stderr == nil {
		env.Stderr = io.Discard
	}
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if env.ConnectTimeout <= 0 {
		env.ConnectTimeout = DefaultConnectTimeout
	}
	root := NewCommand(&env)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(env.Stderr, "repaird: error: %s\n", OneLine(err))
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") {
		return ExitUsage
	}
	return ExitError
}

// OneLine flattens an error message (joined errors) into one line.
func OneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

// NewCommand returns the root command.
func NewCommand(env *Env) *cobra.Command {
	var logLevel, logFormat string
	root := &cobra.Command{
		Use:           "repaird",
		Short:         "Tidemark's repair daemon: anti-entropy repair and hint replay across regions",
		Version:       Version(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if env.Logger != nil {
				return nil
			}
			l, err := newLogger(env.Stderr, logLevel, logFormat)
			if err != nil {
				return usageError{err}
			}
			env.Logger = l
			return nil
		},
	}
	root.SetVersionTemplate("repaird {{.Version}}\n")
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&logFormat, "log-format", "text", "log format: text or json")
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newRepairCommand(env), newServeCommand(env), newValidateCommand(env), newConflictsCommand(env))
	root.AddCommand(clientCommands(env)...)
	return root
}

// newLogger returns the logger --log-level and --log-format ask for.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// Version is repaird's version as the build recorded it: the module
// version, or the VCS revision (with "+dirty" for a modified tree).
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if modified == "true" {
			rev += "+dirty"
		}
		if v == "" || v == "(devel)" {
			return "devel " + rev
		}
		return v + " " + rev
	}
	if v == "" {
		return "(devel)"
	}
	return v
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("%q takes no arguments (got %q); see %s --help", cmd.CommandPath(), args, cmd.CommandPath())}
	}
	return nil
}

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return nil, usageError{errors.New("--config is required")}
	}
	return config.Load(path)
}

func newValidateCommand(env *Env) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "validate --config FILE",
		Short: "Check a configuration file",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			if err := cfg.CheckFiles(); err != nil {
				return err
			}
			hints := "hints: not configured"
			if h := cfg.Hints; len(h.Brokers) > 0 {
				groups := make([]string, len(h.Regions))
				for i, r := range h.Regions {
					groups[i] = fmt.Sprintf("%s: group %q", r, h.GroupFor(r))
				}
				hints = fmt.Sprintf("hints: %d brokers, topic prefix %q, replaying %s, %d hmac keys",
					len(h.Brokers), h.TopicPrefix, strings.Join(groups, ", "), len(h.HMACKeys))
			}
			mode := fmt.Sprintf("%d namespaces", len(cfg.Namespaces))
			if len(cfg.Namespaces) == 0 {
				mode = "replay only, no namespaces"
			}
			fmt.Fprintf(env.Stdout, "%s: ok (%d regions, home %s, repair progress in %s, keyspace %s, %s, interval %v; %s)\n",
				path, len(cfg.Regions), cfg.Home, cfg.ProgressRegion(), cfg.Keyspace, mode, cfg.Repair.Interval, hints)
			if w := cfg.Hints.UnsignedWarning(); w != "" {
				fmt.Fprintf(env.Stdout, "WARNING: %s\n", w)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (YAML)")
	return cmd
}

func newServeCommand(env *Env) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the daemon: scheduled repair of every namespace, hint replay, the status page and the control API",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			d, err := daemon.New(cfg, daemon.Options{Logger: env.Logger, Connect: env.Connect})
			if err != nil {
				return err
			}
			return d.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (YAML)")
	return cmd
}

type repairFlags struct {
	config    string
	namespace string
	dryRun    bool
	fresh     bool
	segments  int
}

func newRepairCommand(env *Env) *cobra.Command {
	var f repairFlags
	cmd := &cobra.Command{
		Use:   "repair --config FILE --namespace NS [--dry-run] [--segments N] [--fresh]",
		Short: "Repair one namespace now (resumes its unfinished run, if any, unless --fresh)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.namespace == "" {
				return usageError{errors.New("--namespace is required")}
			}
			if err := schema.ValidateName("namespace", f.namespace); err != nil {
				return usageError{err}
			}
			if cmd.Flags().Changed("segments") && (f.segments < 1 || f.segments > repair.MaxSegments) {
				return usageError{fmt.Errorf("--segments must be between 1 and %d (got %d)", repair.MaxSegments, f.segments)}
			}
			if f.fresh && f.dryRun {
				return usageError{errors.New("--fresh and --dry-run do not go together: a dry run never resumes a run")}
			}
			cfg, err := loadConfig(f.config)
			if err != nil {
				return err
			}
			return runRepair(cmd.Context(), env, cfg, f)
		},
	}
	cmd.Flags().StringVar(&f.config, "config", "", "configuration file (YAML)")
	cmd.Flags().StringVar(&f.namespace, "namespace", "", "namespace to repair")
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "report what differs, write nothing")
	cmd.Flags().IntVar(&f.segments, "segments", 0, "number of segments for a new run (default: repair.segments); a resumed run keeps its own")
	cmd.Flags().BoolVar(&f.fresh, "fresh", false, "abandon the namespace's unfinished run, if any, and start a new one")
	return cmd
}

// open connects to the configuration's regions and opens the progress
// store in the progress region (unless dryRun; daemon.OpenProgress);
// release closes the sessions.
func open(ctx context.Context, env *Env, cfg *config.Config, dryRun bool) (regions []repair.Region, store repair.ProgressStore, release func(), err error) {
	if env.Open != nil {
		regions, store, err = env.Open(ctx, cfg)
		return regions, store, func() {}, err
	}
	sessions := daemon.NewSessions(cfg, env.Connect, env.Logger)
	cctx, cancel := context.WithTimeout(ctx, env.ConnectTimeout)
	regions, _, err = sessions.Regions(cctx)
	cancel()
	if err == nil && !dryRun {
		// The progress region of every daemon, recorded in every region
		// (refused when one records another), as `repaird serve` does.
		loc := daemon.NewProgressLocator(cfg, daemon.SessionRecorder(sessions, cfg.Keyspace), env.Logger)
		store, err = daemon.OpenProgress(ctx, loc, sessions)
		if err == nil {
			err = loc.CheckAll(ctx)
		}
	}
	if err != nil {
		sessions.Close()
		return nil, nil, nil, err
	}
	return regions, store, sessions.Close, nil
}

func runRepair(ctx context.Context, env *Env, cfg *config.Config, f repairFlags) error {
	if len(cfg.Regions) < 2 {
		return fmt.Errorf("%w: the file lists %d (a replay-only configuration): add the other regions to the file", repair.ErrTooFewRegions, len(cfg.Regions))
	}
	regions, store, closeRegions, err := open(ctx, env, cfg, f.dryRun)
	if err != nil {
		return err
	}
	defer closeRegions()
	opts := daemon.RepairOptions(cfg, f.namespace)
	opts.Owner = daemon.UniqueOwner(cfg.Repair.Owner)
	if f.segments > 0 {
		// An explicit count wins over sizing from the estimates.
		opts.Segments, opts.RowsPerSegment = f.segments, 0
	}
	opts.DryRun, opts.Fresh = f.dryRun, f.fresh
	opts.Logger = env.Logger
	if !f.dryRun {
		opts.Progress = store
	}
	prog := newProgressView(env.Stdout, f.namespace, f.segments)
	opts.OnProgress = prog.update
	r, err := repair.New(regions, opts)
	if err != nil {
		return err
	}
	rep, err := r.Run(ctx, f.namespace)
	prog.close()
	if rep != nil && rep.RunID != "" {
		WriteSummary(env.Stdout, rep)
		if w := config.RetentionWarning(cfg.Repair.Interval, rep.Retention); w != "" {
			fmt.Fprintf(env.Stdout, "WARNING: %s\n", w)
		}
		if rep.Resumed && f.segments > 0 && rep.Segments != f.segments {
			fmt.Fprintf(env.Stdout, "WARNING: %s\n", segmentsIgnored(rep.RunID, rep.Segments, f.segments))
		}
	}
	return err
}

// segmentsIgnored says that --segments did not apply to a resumed run.
func segmentsIgnored(runID string, has, want int) string {
	return fmt.Sprintf("resuming run %s with its %d segments; --segments %d ignored (add --fresh to abandon that run and start a new one with %d segments)",
		runID, has, want, want)
}

// progressView shows progress as a bar on a terminal, as lines otherwise.
type progressView struct {
	out io.Writer
	ns  string
	bar *progressbar.ProgressBar
	tty bool
	// segments is the count --segments asked for (0: not given); a run
	// with another count is a resumed run, which is said once.
	segments int
	started  bool
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newProgressView(out io.Writer, ns string, segments int) *progressView {
	return &progressView{out: out, ns: ns, tty: isTerminal(out), segments: segments}
}

func (p *progressView) update(pr repair.Progress) {
	if !p.started {
		p.started = true
		if p.segments > 0 && pr.Segments != p.segments {
			fmt.Fprintf(p.out, "WARNING: %s\n", segmentsIgnored(pr.RunID, pr.Segments, p.segments))
		}
	}
	if p.tty {
		if p.bar == nil {
			p.bar = progressbar.NewOptions(pr.Segments,
				progressbar.OptionSetWriter(p.out),
				progressbar.OptionSetDescription("repair "+p.ns),
				progressbar.OptionShowCount(),
				progressbar.OptionSetItsString("segments"),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionClearOnFinish())
		}
		_ = p.bar.Set(pr.SegmentsDone)
		p.bar.Describe(fmt.Sprintf("repair %s: %d differing, %d written", p.ns, pr.RowsDiffering, pr.RowsWritten))
		return
	}
	status := string(pr.Outcome)
	if status == "" {
		status = "done"
	}
	if pr.Err != nil {
		status += ": " + OneLine(pr.Err)
	}
	fmt.Fprintf(p.out, "segment %s %s; %d/%d segments done, rows scanned %d, differing %d, written %d\n",
		pr.Last, status, pr.SegmentsDone, pr.Segments, pr.RowsScanned, pr.RowsDiffering, pr.RowsWritten)
}

func (p *progressView) close() {
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.out)
	}
}

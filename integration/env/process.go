package env

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is one server JVM started by the environment. It runs in its own
// process group, so that signals from a terminal reach the environment's
// handler first and teardown can signal the whole group.
type Process struct {
	// Name identifies the process in errors and logs ("cassandra a/0").
	Name string
	// LogFile is the server's own log; its tail goes into start errors.
	LogFile string

	argv    []string
	dir     string
	outFile string
	env     []string
	// attached processes die with the process that started them
	// (PR_SET_PDEATHSIG); detached ones (make up) outlive it.
	attached bool

	mu      sync.Mutex
	cmd     *exec.Cmd
	pid     int
	done    chan struct{}
	waitErr error
}

// Pid returns the process id, or 0 when it is not running.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// start launches the process. The JVM's stdout and stderr go to outFile.
func (p *Process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	out, err := os.OpenFile(p.outFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Dir = p.dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Env = append(os.Environ(), p.env...)
	if p.attached {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start %s: %w", p.Name, p.argv[0], err)
	}
	p.cmd = cmd
	p.pid = cmd.Process.Pid
	p.done = make(chan struct{})
	done := p.done
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.pid = 0
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// exited returns a channel closed when the process has exited.
func (p *Process) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.done
}

// Running reports whether the process is alive (it may be stopped by SIGSTOP).
func (p *Process) Running() bool {
	select {
	case <-p.exited():
		return false
	default:
		return true
	}
}

func (p *Process) signal(sig syscall.Signal) error {
	pid := p.Pid()
	if pid == 0 {
		return fmt.Errorf("%s is not running", p.Name)
	}
	// Negative pid: the whole process group.
	if err := syscall.Kill(-pid, sig); err != nil {
		return fmt.Errorf("%s: signal %v: %w", p.Name, sig, err)
	}
	return nil
}

// Pause freezes the process with SIGSTOP: its sockets stay open but nothing
// answers, as with a hung node or a network partition. It returns once
// every thread of the process has stopped, so that what a test does next
// meets a process that no longer runs (the kernel stops each thread the
// next time it is scheduled, not when kill returns), or with an error after
// pauseWait.
func (p *Process) Pause() error {
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	deadline := time.Now().Add(pauseWait)
	for {
		running := threadsNotIn(p.Pid(), stoppingStates)
		if running == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d threads still running %s after SIGSTOP", p.Name, running, pauseWait)
		}
		time.Sleep(time.Millisecond)
	}
}

// pauseWait bounds how long Pause waits for the threads to stop.
const pauseWait = 10 * time.Second

// Stopped reports whether the process runs and every one of its threads is
// stopped (by Pause): in state T, or exiting. A thread in uninterruptible
// sleep is not stopped yet — a process just started is often in D while
// the kernel loads its program — although Pause may return with one
// (stoppingStates).
func (p *Process) Stopped() bool {
	pid := p.Pid()
	return pid != 0 && p.Running() && pidAlive(pid) && threadsNotIn(pid, stoppedStates) == 0
}

// Thread states (the field after the command name in
// /proc/<pid>/task/<tid>/stat): stopped (T, t) or exiting (Z, X).
// stoppingStates adds uninterruptible sleep (D: a disk write, an fsync),
// which Pause accepts: such a thread stops as it leaves the kernel,
// before it runs any of the process's code, and a slow disk must not make
// Pause fail.
const (
	stoppedStates  = "TtZX"
	stoppingStates = stoppedStates + "D"
)

// threadsNotIn counts the threads of pid whose state is not one of
// states. A thread that exits while it is read is not counted; a pid that
// cannot be read counts 0.
func threadsNotIn(pid int, states string) int {
	if pid <= 0 {
		return 0
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	n := 0
	for _, t := range tasks {
		f := statFields(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if len(f) == 0 {
			continue
		}
		if !strings.ContainsRune(states, rune(f[0][0])) {
			n++
		}
	}
	return n
}

// Resume continues a paused process with SIGCONT.
func (p *Process) Resume() error { return p.signal(syscall.SIGCONT) }

// Kill ends the process with SIGKILL (a crash: no clean shutdown) and waits
// for it to exit.
func (p *Process) Kill(ctx context.Context) error {
	if !p.Running() {
		return nil
	}
	_ = p.signal(syscall.SIGCONT)
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.exited():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: waiting for exit after SIGKILL: %w", p.Name, ctx.Err())
	}
}

// Stop ends the process with SIGTERM, then SIGKILL after grace.
func (p *Process) Stop(ctx context.Context, grace time.Duration) error {
	if !p.Running() {
		return nil
	}
	_ = p.signal(syscall.SIGCONT)
	_ = p.signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited():
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	return p.Kill(context.WithoutCancel(ctx))
}

// Tail returns the last n lines of the server's log (or of its console
// output when the log is empty), for error messages.
func (p *Process) Tail(n int) string {
	for _, f := range []string{p.LogFile, p.outFile} {
		if f == "" {
			continue
		}
		if t := tailFile(f, n); strings.TrimSpace(t) != "" {
			return t
		}
	}
	return "(no output)"
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// errorLines returns the lines of path that look like the reason a JVM
// failed (ERROR lines and exceptions), at most n of them.
func errorLines(path string, n int) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "ERROR") || strings.Contains(l, "Exception:") || strings.HasPrefix(l, "Error:") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// procStat returns the fields of /proc/<pid>/stat after the command name
// (fields 3 and on: index i is field i+3), or nil if it cannot be read.
func procStat(pid int) []string {
	if pid <= 0 {
		return nil
	}
	return statFields(fmt.Sprintf("/proc/%d/stat", pid))
}

// statFields returns the fields of a process's or thread's stat file
// after the command name (the first is the state), or nil if it cannot be
// read.
func statFields(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// startTime returns the kernel's start time of pid (field 22 of
// /proc/<pid>/stat, in clock ticks since boot), or 0 if it cannot be read.
// A pid with the same number but another start time is another process.
func startTime(pid int) uint64 {
	f := procStat(pid)
	if len(f) < 20 {
		return 0
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// userHZ is the unit of the times in /proc/<pid>/stat: USER_HZ, 100 on
// Linux whatever the kernel's own tick rate.
const userHZ = 100

// CPUTime returns the CPU time the process has used so far, user and
// system, all its threads (fields 14 and 15 of /proc/<pid>/stat, 10 ms
// resolution), or 0 when it is not running or the file cannot be read.
// Benchmarks compare what the servers spent on two ways of doing the
// same work with it.
func (p *Process) CPUTime() time.Duration {
	f := procStat(p.Pid())
	if len(f) < 13 {
		return 0
	}
	user, err1 := strconv.ParseUint(f[11], 10, 64)
	sys, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(user+sys) * (time.Second / userHZ)
}

// sameProcess reports whether pid is alive and still the process that had
// start time ticks when it was recorded (ticks 0: not recorded, pid alone).
func sameProcess(pid int, ticks uint64) bool {
	if !pidAlive(pid) {
		return false
	}
	return ticks == 0 || startTime(pid) == ticks
}

// killPid kills a process group left by an earlier run (from the state file).
func killPid(pid int) {
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(-pid, syscall.SIGCONT)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// pidAlive reports whether pid exists and is not a zombie.
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return !errors.Is(err, syscall.ESRCH)
	}
	// Field 3 is the state; Z is a zombie.
	f := procStat(pid)
	return f != nil && (len(f) == 0 || f[0] != "Z")
}

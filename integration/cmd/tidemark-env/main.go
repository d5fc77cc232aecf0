// Command tidemark-env starts, describes and stops the local environment
// (real Cassandra 5.0 regions and a Kafka broker as local JVM processes).
//
//	tidemark-env up       start in the background, print how to connect
//	tidemark-env status   say whether it runs and how to connect
//	tidemark-env down     stop every server it started
//	tidemark-env fetch    only fetch the jars into the cache
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tidemark/tidemark/integration/env"
)

func main() {
	if len(os.Args) != 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "up":
		err = up(ctx)
	case "down":
		var n int
		n, err = env.Down("")
		if err == nil {
			fmt.Printf("tidemark-env: stopped %d server processes\n", n)
		}
	case "status":
		err = status(ctx)
	case "fetch":
		_, _, err = env.FetchJars(ctx, logf)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tidemark-env %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: tidemark-env up|status|down|fetch")
	os.Exit(2)
}

func logf(format string, args ...any) {
	fmt.Printf("tidemark-env: "+format+"\n", args...)
}

func up(ctx context.Context) error {
	if l, err := env.Attach(ctx, ""); err == nil {
		fmt.Println("tidemark-env: already running")
		describe(l)
		return nil
	}
	// Clean up what a crashed earlier run may have left.
	if n, err := env.Down(""); err == nil && n > 0 {
		logf("stopped %d processes left by an earlier run", n)
	}
	start := time.Now()
	l, err := env.Start(ctx, env.Options{Detached: true, Secure: env.SecureByDefault(), Logf: logf})
	if err != nil {
		return err
	}
	logf("started in %s", time.Since(start).Round(100*time.Millisecond))
	describe(l)
	return nil
}

func status(ctx context.Context) error {
	l, err := env.Attach(ctx, "")
	if errors.Is(err, env.ErrNotRunning) {
		fmt.Println("tidemark-env: not running (`make up` starts it)")
		return nil
	}
	if err != nil {
		return err
	}
	describe(l)
	return nil
}

func describe(l *env.Local) {
	fmt.Printf("tidemark-env: running since %s, files in %s\n", l.StartedAt().Format(time.RFC3339), l.Dir())
	for _, r := range l.Regions() {
		var pids []string
		for _, n := range l.Nodes(r.Name) {
			pids = append(pids, fmt.Sprint(n.Pid()))
		}
		fmt.Printf("  region %-2s  dc=%-2s  cql=%s  (pids %s)\n", r.Name, r.DC, strings.Join(r.Hosts, ","), strings.Join(pids, ","))
	}
	sec := l.Secure()
	if sec != nil {
		var pids []string
		for _, n := range l.Nodes(sec.Region.Name) {
			pids = append(pids, fmt.Sprint(n.Pid()))
		}
		fmt.Printf("  region %-2s  dc=%-2s  cql=%s  TLS required, password auth  (pid %s)\n", sec.Region.Name, sec.Region.DC, strings.Join(sec.Region.Hosts, ","), strings.Join(pids, ","))
		fmt.Printf("             role %s / %s (superuser %s / %s)\n", sec.Username, sec.Password, sec.AdminUsername, sec.AdminPassword)
	}
	if b := l.Broker(); b != nil {
		fmt.Printf("  kafka      bootstrap=%s  (pid %d)\n", b.Addr, b.Pid())
		if sec != nil && sec.KafkaAddr != "" {
			fmt.Printf("             sasl_ssl=%s  %s  user %s / %s\n", sec.KafkaAddr, strings.Join(env.KafkaMechanisms, ","), sec.KafkaUser, sec.KafkaPassword)
		}
	}
	if sec != nil {
		fmt.Printf("  tls        CA %s (signed every secure endpoint's certificate)\n", sec.CAFile)
	}
	fmt.Println("  connect:   cqlsh-compatible clients on the cql addresses above; `make down` stops everything")
}

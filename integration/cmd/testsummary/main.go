// Command testsummary reads `go test -json` on stdin, prints the tests'
// output as go test would, and ends with one line per run:
//
//	integration: 42 passed, 0 failed, 0 skipped
//
// It exits non-zero when a test failed, when no test ran, or, with
// -fail-on-skip, when a test was skipped (CI must not pass on skipped
// integration tests).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	label := flag.String("label", "tests", "name printed before the counts")
	failOnSkip := flag.Bool("fail-on-skip", false, "exit 1 if any test was skipped")
	flag.Parse()

	var passed, failed, skipped int
	var skippedNames, failedNames []string
	var pkgFailed []string
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			// Build errors and other non-JSON lines pass through.
			fmt.Println(string(line))
			continue
		}
		switch e.Action {
		case "output":
			fmt.Print(e.Output)
		case "pass":
			if e.Test != "" {
				passed++
			}
		case "fail":
			if e.Test != "" {
				failed++
				failedNames = append(failedNames, e.Test)
			} else if e.Package != "" {
				// A package failed as a whole: a build error, a panic in
				// TestMain, a timeout.
				pkgFailed = append(pkgFailed, e.Package)
			}
		case "skip":
			if e.Test != "" {
				skipped++
				skippedNames = append(skippedNames, e.Test)
			}
		}
	}
	sort.Strings(failedNames)
	sort.Strings(skippedNames)
	if len(failedNames) > 0 {
		fmt.Printf("%s: FAILED: %v\n", *label, failedNames)
	}
	if len(skippedNames) > 0 {
		fmt.Printf("%s: SKIPPED: %v\n", *label, skippedNames)
	}
	if len(pkgFailed) > 0 {
		fmt.Printf("%s: packages FAILED: %v\n", *label, pkgFailed)
	}
	fmt.Printf("%s: %d passed, %d failed, %d skipped\n", *label, passed, failed, skipped)
	switch {
	case failed > 0 || len(pkgFailed) > 0:
		os.Exit(1)
	case passed == 0:
		fmt.Printf("%s: no test ran\n", *label)
		os.Exit(1)
	case *failOnSkip && skipped > 0:
		fmt.Printf("%s: skipped tests are not passing tests (-fail-on-skip)\n", *label)
		os.Exit(1)
	}
}

# Tidemark. `make test` and `make demo` work on a fresh machine with Go, a JDK 17
# and Maven: the servers' jars are fetched from Maven Central once and cached in
# ~/.cache/tidemark (TIDEMARK_CACHE overrides).

GO        ?= go
PKGS      := $(shell $(GO) list ./... 2>/dev/null | grep -v /integration)
ENVCTL    := $(GO) run ./integration/cmd/tidemark-env
# The test logs print failed and skipped tests' output; SUMMARY_FLAGS=-v
# prints every test's.
SUMMARY_FLAGS ?=
SUMMARY   := $(GO) run ./integration/cmd/testsummary $(SUMMARY_FLAGS)
# Integration tests share one environment; keep the run bounded.
ITEST_TIMEOUT ?= 15m
ITEST_FLAGS   ?= -count=1 -p 1 -parallel 4 -timeout $(ITEST_TIMEOUT)
# 2025.1.1 is refused by the module proxy here; v0.8.2 is the same tool, newer.
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
CI ?= false
export TIDEMARK_THREE_NODE_REGION ?= 1

.PHONY: all test unit integration browser up down status fetch demo bench chaos lint fmt vet tools

all: lint test

## unit: every package's tests, with the race detector, no servers needed.
unit:
	$(GO) test -race -count=1 -json $(PKGS) | $(SUMMARY) -label unit

## browser: Debian's chromium, for the status page's browser test
## (integration/statuspage_test.go; it fails under CI=true without one).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium)

## integration: start the environment (unless one runs), run the integration
## tests against it, and stop what was started, also on Ctrl-C.
integration: browser
	@set -e; \
	started=0; \
	if ! $(ENVCTL) status | grep -q "running since"; then \
	  trap '$(ENVCTL) down >/dev/null 2>&1 || true' EXIT INT TERM; \
	  $(ENVCTL) up; started=1; \
	fi; \
	fos=""; if [ "$(CI)" = "true" ]; then fos="-fail-on-skip"; fi; \
	$(GO) test -race -json $(ITEST_FLAGS) ./integration/... | $(SUMMARY) -label integration -dump "$${TMPDIR:-/tmp}/tidemark-integration-goroutines.txt" $$fos; \
	if [ $$started = 1 ]; then $(ENVCTL) down; ./integration/check-clean.sh; fi

## test: unit tests, then integration tests on a real environment.
test: unit integration

## up: start the environment in the background and print how to connect.
up:
	$(ENVCTL) up

## down: stop every server the environment started.
down:
	$(ENVCTL) down

status:
	$(ENVCTL) status

fetch:
	$(ENVCTL) fetch

## demo: start an environment, show Tidemark's story, stop it.
demo:
	$(GO) run ./cmd/demo

## bench: benchmarks on the real environment, servers pinned to core 0 and the
## client to the others (integration/bench.sh); figures go in docs/benchmarks.md.
BENCH ?= BenchmarkOverhead|BenchmarkHints|BenchmarkRepair
bench:
	@set -e; started=0; \
	if ! $(ENVCTL) status | grep -q "running since"; then \
	  trap '$(ENVCTL) down >/dev/null 2>&1 || true' EXIT INT TERM; $(ENVCTL) up; started=1; fi; \
	./integration/bench.sh $(GO) test -run '^$$' -bench '$(BENCH)' -benchtime 1x -count=1 -timeout 60m ./integration/; \
	if [ $$started = 1 ]; then $(ENVCTL) down; fi

## chaos: the randomized fault suite alone, for long runs:
##   make chaos SEED=123 DURATION=10m   (a seed reproduces a schedule)
## `make test` runs it too, with a random seed and a short schedule.
SEED ?=
DURATION ?= 5m
chaos:
	@set -e; started=0; \
	if ! $(ENVCTL) status | grep -q "running since"; then \
	  trap '$(ENVCTL) down >/dev/null 2>&1 || true' EXIT INT TERM; $(ENVCTL) up; started=1; fi; \
	TIDEMARK_CHAOS_SEED=$(SEED) TIDEMARK_CHAOS_DURATION=$(DURATION) TIDEMARK_TEST_WATCHDOG=0 \
	  $(GO) test -json -count=1 -run '^TestChaos$$' -timeout 4h ./integration/ | $(GO) run ./integration/cmd/testsummary -v -label chaos; \
	if [ $$started = 1 ]; then $(ENVCTL) down; fi

fmt:
	gofmt -w .

vet:
	$(GO) vet ./...
	$(GO) vet -tags docker ./integration/

## lint: gofmt, go vet, staticcheck.
lint: vet
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...

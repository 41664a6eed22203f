# vbctoken — build, test and run.
#   make local   run the keeper on this machine (file store + built-in VBC sandbox)
#   make test    every test: unit, race, conformance (moto), end-to-end (Lambda binaries), CDK, cfn-lint, short soak and fuzz
SHELL := /bin/bash
GO ?= go
STATICCHECK_VERSION ?= v0.8.2
FUNCTIONS := callback refresher
DIST := dist
# Lambda: provided.al2023 on arm64, no RPC shim, reproducible, stripped. The flags live in
# internal/lambdabuild, which the CDK app's synth-time bundling uses too.
LAMBDA_BUILD := $(GO) run ./internal/lambdabuild/cmd/lambdabuild -go $(GO)
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
FUZZTIME ?= 3s
NON_INFRA = $$($(GO) list ./... | grep -v '/infra')

.PHONY: all test test-go test-infra test-fuzz test-examples examples-deps lint build local bench soak fleetsim fuzz synth invoke-callback invoke-refresher clean \
	build-CallbackFunction build-RefresherFunction

all: lint test

## test: everything CI runs (.ci/run calls exactly this)
test: test-go test-infra test-fuzz

# test-go includes ./examples: the example apps (Go, Python, Node) against moto and the VBC sandbox.
test-go: examples-deps
	$(GO) vet $(NON_INFRA)
	$(GO) test -race -count=1 -timeout 8m $(NON_INFRA)

## test-examples: only the example apps of examples/ (README "Apps")
test-examples: examples-deps
	$(GO) test -race -count=1 -v ./examples/...

# The Node example's packages (package-lock.json, never node_modules, is committed). Python's
# boto3 comes from pip (.ci/run installs it); the test says what is missing.
EXAMPLES_NODE := examples/node
examples-deps: $(EXAMPLES_NODE)/node_modules/.package-lock.json

$(EXAMPLES_NODE)/node_modules/.package-lock.json: $(EXAMPLES_NODE)/package.json $(EXAMPLES_NODE)/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix $(EXAMPLES_NODE) --no-audit --no-fund; \
	else \
		echo "npm not found: the Node example will be skipped (install Node.js 20+ with npm)"; \
	fi

# The CDK stacks, cdk-nag's AwsSolutions and Serverless packs, cfn-lint and the SAM parity test.
test-infra:
	$(GO) test -count=1 -timeout 8m ./infra/...

# Each fuzz target runs briefly on top of its committed seed corpus; `make fuzz` runs longer.
# A run that ends with a bare "context deadline exceeded" at the -fuzztime limit and wrote no
# failing input is Go's fuzz-coordinator race (golang/go#75804, fixed in Go 1.27), not a finding.
test-fuzz:
	@set -e; for pkg in $(NON_INFRA); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f for $(FUZZTIME)"; \
			if ! $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg >/tmp/vbctoken-fuzz.log 2>&1; then \
				if grep -q 'Failing input written' /tmp/vbctoken-fuzz.log || ! grep -q '^    context deadline exceeded$$' /tmp/vbctoken-fuzz.log; then \
					cat /tmp/vbctoken-fuzz.log; exit 1; \
				fi; \
				echo "  $$f: bare 'context deadline exceeded' at the -fuzztime limit and no failing input (golang/go#75804), not a finding"; \
			fi; \
		done; \
	done

fuzz:
	$(MAKE) test-fuzz FUZZTIME=60s

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

## build: the two Lambda bootstrap binaries (arm64, provided.al2023) and their zips
build: $(foreach f,$(FUNCTIONS),$(DIST)/$(f).zip)

$(DIST)/%/bootstrap: FORCE
	$(LAMBDA_BUILD) -o $(@D) ./functions/$*

$(DIST)/%.zip: $(DIST)/%/bootstrap
	@rm -f $@
	cd $(DIST)/$* && touch -d '2020-01-01 00:00:00' bootstrap && zip -q -X ../$*.zip bootstrap

FORCE:

# Keep the binaries: `-c callbackCodeDir=../dist/callback -c refresherCodeDir=../dist/refresher`
# deploys them as built here instead of building again at synth.
.PRECIOUS: $(DIST)/%/bootstrap

# SAM `BuildMethod: makefile` targets (sam build calls them with ARTIFACTS_DIR set).
build-CallbackFunction:
	$(LAMBDA_BUILD) -o $(ARTIFACTS_DIR) ./functions/callback
build-RefresherFunction:
	$(LAMBDA_BUILD) -o $(ARTIFACTS_DIR) ./functions/refresher

## local: the keeper on this machine — file store in .vbctoken/, VBC sandbox on the same port
# Built, then run directly: under `go run`, Ctrl-C ends with "make: *** Error 1" even though
# serve stops cleanly with exit 0.
local:
	$(GO) build -o bin/vbctoken ./cmd/vbctoken
	./bin/vbctoken serve $(LOCAL_FLAGS)

## synth: the CloudFormation of the CDK stack into cdk.out (offline, no account); builds the
## functions from source like `cdk synth`, and writes cdk-nag's reports next to the template
synth:
	cd infra && CDK_OUTDIR=../cdk.out $(GO) run .

## invoke-*: run a built function once through the local Lambda Runtime API (no SAM, no Docker)
# EVENT=events/x.json picks another event file.
invoke-callback invoke-refresher:
	$(GO) test -count=1 -run '^TestInvoke$$' -v ./internal/e2e -invoke.function=$(subst invoke-,,$@) $(if $(EVENT),-invoke.event=$(abspath $(EVENT)))

bench:
	$(GO) run ./cmd/vbcbench

soak:
	$(GO) test -count=1 -timeout 30m -run TestSoak ./internal/soak -soak.days=365 -soak.motodays=30 -soak.vbc=all -soak.report=$(CURDIR)/soak-report.json -v

## fleetsim: accounts mode at 10,000 accounts × 30 days on a virtual clock (docs/fleet.md);
## `make test` runs the same simulation at 200 accounts × 3 days
FLEET_FLAGS ?= -fleet.accounts=10000 -fleet.days=30
fleetsim:
	GOGC=400 $(GO) test -count=1 -timeout 3h -run '^TestFleet$$' ./internal/fleetsim $(FLEET_FLAGS) -fleet.report=$(CURDIR)/fleet-report.json -v

clean:
	rm -rf $(DIST) cdk.out .vbctoken test-artifacts

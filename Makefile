# voxbridge: the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
BIN     ?= bin/voxbridge
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build run test interop bench bench-compare lint fuzz soak clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/voxbridge

# Zero configuration: SIP on UDP+TCP 0.0.0.0:5060, HTTP on 127.0.0.1:8080,
# RTP 10000-20000, database ./voxbridge.db.
run:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/voxbridge serve $(ARGS)

test:
	$(GO) test -race -count=1 -timeout 30m ./...

# Real SIP peers we did not write (SIPp) against a freshly started server.
interop: build
	BIN=$(BIN) ./testdata/interop/run.sh

bench:
	$(GO) test -run=NONE -bench=. -benchmem ./...

# The same SIPp load against voxbridge and an echo server built on diago
# (bench/diago-echo, its own module), one after the other on loopback:
# failed calls, CPU seconds, peak RSS and the ratios. 4-8 minutes (runs
# disturbed by other work are repeated); LOADS="200:50" for a quick check.
bench-compare:
	GO=$(GO) ./bench/compare.sh

lint:
	$(GO) vet ./...
	$(GO) mod tidy -diff
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

FUZZTIME ?= 15s
# Each fuzz target for a bounded time (go test -fuzz takes one target at a
# time): 13 targets, about 4-5 minutes with the builds.
FUZZ_TARGETS = FuzzParseNegotiate:./sip/sdp/ FuzzReader:./media/pcap/ FuzzParseValidate:./flow/ \
	FuzzStreamPacket:./media/ FuzzReceiverSequence:./media/ FuzzRTCP:./media/ FuzzTelephoneEvent:./media/ \
	FuzzReadWAV:./media/ FuzzDecodePageToken:./store/ \
	FuzzParseInfoDTMF:./sip/ FuzzDigestHeader:./sip/ FuzzDigestCheck:./sip/ FuzzServerDatagram:./sip/
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "fuzz $${t%%:*} ($${t#*:}) for $(FUZZTIME)"; \
	  $(GO) test -run=NONE -fuzz="^$${t%%:*}$$" -fuzztime=$(FUZZTIME) "$${t#*:}"; \
	done

# 30 minutes of call churn; goroutines, heap and RSS must stay flat. Not in CI.
soak: build
	BIN=$(BIN) ./testdata/soak/run.sh

clean:
	rm -rf bin

# Scripted calls to an agent (testdata/conversations): transcript and wire
# timeline of each, real provider clients against agent/fake. About 2 minutes.
conversations:
	$(GO) test -race -count=1 -run '^TestConversations$$' ./agent/

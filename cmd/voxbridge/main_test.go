package main

import (
	"log/slog"
	"os"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestMain(m *testing.M) {
	// sipgo logs every garbage message the tests send; keep test output
	// readable. Set VOXBRIDGE_TEST_LOG=1 to see it.
	if os.Getenv("VOXBRIDGE_TEST_LOG") == "" {
		sip.SetDefaultLogger(slog.New(slog.DiscardHandler))
	}
	os.Exit(m.Run())
}

package sip

import (
	"os"
	"testing"

	"github.com/voxbridge/voxbridge/sip/siptest"
)

func TestMain(m *testing.M) {
	siptest.QuietLibraryLogs()
	os.Exit(m.Run())
}

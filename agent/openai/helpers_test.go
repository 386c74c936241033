package openai_test

import (
	"strings"
	"testing"

	"github.com/voxbridge/voxbridge/agent/internal/testutil"
)

// testKey is a realistic-looking key; no error text may contain it.
const testKey = "sk-test-VERYSECRET0123456789abcdef"

// noLeaks fails the test if goroutines of this package's clients outlive it.
func noLeaks(t *testing.T) { testutil.NoLeaks(t, "voxbridge/agent/openai.") }

func noKey(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), testKey) {
		t.Errorf("error text contains the API key: %v", err)
	}
}

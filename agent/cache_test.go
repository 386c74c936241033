package agent_test

import (
	"slices"
	"testing"

	"github.com/voxbridge/voxbridge/agent"
)

// Two agents whose TTS servers both call a voice "v1" do not share
// rendered phrases: each greeting is rendered by its own server, and a
// second call to the same server plays it from the cache.
func TestAudioCacheIsPerTTSEndpoint(t *testing.T) {
	cache := &agent.AudioCache{}
	greet := func(baseURL string) *harness {
		t.Helper()
		def := baseDef()
		def.TTS = &agent.ProviderConfig{Provider: "elevenlabs", Voice: "v1", BaseURL: baseURL}
		h := newHarness(t, def)
		h.opt.Cache = cache
		h.start()
		h.waitFinalTurns(1)
		h.waitListening()
		h.hangup()
		return h
	}
	spoke := func(h *harness) bool { return slices.Contains(h.tts.Spoken(), baseDef().StartingMessage) }

	if h := greet("http://tts-a.example.test"); !spoke(h) {
		t.Fatal("the first server did not render the greeting")
	}
	if h := greet("http://tts-b.example.test"); !spoke(h) {
		t.Error("the second server's agent played the first server's rendering of its voice")
	}
	if h := greet("http://tts-a.example.test"); spoke(h) {
		t.Error("the first server's greeting was rendered again instead of played from the cache")
	}
	// The greeting and the pre-rendered apology and wait filler, once per
	// server.
	if cache.Len() != 6 {
		t.Errorf("%d phrases cached, want 6 (greeting, apology and filler per server)", cache.Len())
	}
}

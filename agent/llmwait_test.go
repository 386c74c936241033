package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/agenttest"
	"github.com/voxbridge/voxbridge/media"
)

// toneStart is the offset of the first 50 ms window of out where word's
// tone is clear, or -1.
func toneStart(out []int16, word string) int {
	f := agenttest.ToneFor(word)
	const win = 400
	for i := 0; i+win <= len(out); i += win / 4 {
		if media.ToneLevel(out[i:i+win], f) > 0.15 {
			return i
		}
	}
	return -1
}

func kindsOf(ts []agent.Turn) string {
	var k []string
	for _, t := range ts {
		k = append(k, t.Kind)
	}
	return strings.Join(k, ",")
}

// A model slow to start (2.5 s to its first token) is covered once by the
// filler after 1.5 s; the answer follows it, and the turn's latency is
// measured to the answer, not to the filler.
func TestSlowFirstTokenSaysFillerOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, baseDef())
	h.llm.FirstToken = 2500 * time.Millisecond
	h.stt.Script = []agenttest.Utterance{{Text: "Do you have a table tonight?"}}
	h.llm.Script = []agenttest.Reply{{Text: "Yes, at eight."}}
	h.start()
	h.waitFinalTurns(1)
	h.waitListening()
	h.call.Say(agenttest.Speech(time.Second))
	h.waitFinalTurns(4)
	h.waitListening()
	res := h.hangup()

	// In the order heard: the filler, then the answer.
	if got := kindsOf(res.Transcript); got != "greeting,speech,filler,reply" {
		t.Errorf("turn kinds %s, want greeting,speech,filler,reply (one filler, before the reply)", got)
	}
	for i, tt := range res.Transcript {
		if tt.Index != i {
			t.Errorf("turn %d has index %d", i, tt.Index)
		}
	}
	out, _ := h.call.Outbound()
	filler, answer := toneStart(out, "One"), toneStart(out, "eight.")
	if filler < 0 || answer < 0 || filler > answer {
		t.Errorf("filler at sample %d, answer at %d: want the filler heard, then the answer", filler, answer)
	}
	if len(res.Latency) != 1 {
		t.Fatalf("latency rows %+v", res.Latency)
	}
	if l := res.Latency[0]; l.Turn != 3 || res.Transcript[3].Kind != agent.KindReply {
		t.Errorf("the latency row is for turn %d; want the reply's, 3", l.Turn)
	}
	if f, r := res.Transcript[2], res.Transcript[3]; f.Start.IsZero() || !f.Start.Before(r.Start) {
		t.Errorf("filler heard from %v, reply from %v: want the filler first", f.Start, r.Start)
	}
	if l := res.Latency[0]; l.FirstPacket.Before(l.LLMFirstText) {
		t.Errorf("the turn's first packet %v is before the model's first token %v: the filler was measured", l.FirstPacket, l.LLMFirstText)
	}
}

// A model that never answers: llm.first_token_timeout_ms and llm.retries
// bound the dead air. The caller hears the filler, then the apology, at
// most first_token_timeout × (retries+1) after their question (plus the
// endpoint and a little slack), however long the general LLM timeout.
func TestHangingLLMDeadAirIsBounded(t *testing.T) {
	t.Parallel()
	def := baseDef()
	def.LLM = &agent.ProviderConfig{Provider: "openai", FirstTokenTimeoutMS: 1200} // retries: default 1
	h := newHarness(t, def)
	h.stt.Script = []agenttest.Utterance{{Text: "Hello?"}}
	h.llm.Script = []agenttest.Reply{{Hang: true}, {Hang: true}, {Hang: true}}
	h.start()
	h.waitFinalTurns(1)
	h.waitListening()
	_, last := h.call.Say(agenttest.Speech(time.Second))
	res := h.result()

	if res.Failure == nil || res.Failure.Provider != "llm" || res.Failure.Kind != "timeout" || res.Failure.Attempts != 2 ||
		!strings.Contains(res.Failure.Err, "first token") {
		t.Fatalf("failure %+v", res.Failure)
	}
	if n := len(h.llm.Requests()); n != 2 {
		t.Errorf("%d LLM requests, want 2", n)
	}
	if got := kindsOf(res.Transcript); got != "greeting,speech,filler,reply,apology,goodbye" {
		t.Errorf("turn kinds %s", got)
	}
	out, tick0 := h.call.Outbound()
	spokeEnd := int(last-tick0) * 160
	filler, apology := toneStart(out, "One"), toneStart(out, "sorry,")
	if filler < spokeEnd || apology < filler {
		t.Fatalf("filler at sample %d, apology at %d, caller stopped at %d: want filler then apology", filler, apology, spokeEnd)
	}
	// 2 × 1.2 s of waiting after the STT final (200 ms) and the endpoint
	// (250 ms after a full sentence): about 2.9 s. A third attempt would
	// pass 4 s; the old 10 s × 3, 30 s.
	deadAir := time.Duration(apology-spokeEnd) * time.Second / 8000
	t.Logf("caller stopped → apology: %v", deadAir)
	if deadAir > 3800*time.Millisecond {
		t.Errorf("%v from the caller's question to the apology, want about 2×1.2 s", deadAir)
	}
}

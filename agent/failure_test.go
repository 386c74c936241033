package agent_test

import (
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/agenttest"
	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/agent/openai"
)

// builtinAt returns where the built-in apology starts in out, or -1.
func builtinAt(out []int16) int {
	want := agent.BuiltinApology()
	// Its first loud packet: the file starts close to silence.
	off := 0
	for off+160 <= len(want) && meanSquare(want[off:off+160]) < 100*100 {
		off += 160
	}
	for j := 0; j+160 <= len(out); j++ {
		if slices.Equal(out[j:j+160], want[off:off+160]) {
			return j - off
		}
	}
	return -1
}

func meanSquare(p []int16) float64 {
	var s float64
	for _, x := range p {
		s += float64(x) * float64(x)
	}
	return s / float64(len(p))
}

// refusedURL is an address where nothing listens: every connection is
// refused, as with a provider that is down.
func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/v1"
}

func TestBuiltinApologyIsEmbedded(t *testing.T) {
	pcm := agent.BuiltinApology()
	if d := time.Duration(len(pcm)) * time.Second / 8000; d < time.Second || d > 5*time.Second {
		t.Fatalf("built-in apology lasts %v", d)
	}
}

// handedBack waits for the session's end and checks that it ended for
// provider's failure without hanging up (ReturnOnFailure: the flow decides).
func (h *harness) handedBack(provider string) agent.Result {
	h.t.Helper()
	res := h.result()
	if res.Reason != agent.EndProviderFailure || res.Failure == nil || res.Failure.Provider != provider {
		h.t.Fatalf("reason %q failure %+v, want a %s failure", res.Reason, res.Failure, provider)
	}
	if _, hung := h.call.HangupReason(); hung {
		h.t.Error("the session hung up; the flow should decide")
	}
	return res
}

// Every provider is down when the call is handed to the agent: the greeting
// cannot be rendered, so the caller hears the built-in apology within 2 s
// of the start, and (ReturnOnFailure) the session hands the call back to
// its flow instead of hanging up.
func TestProvidersDownAtStartApologizeAndHandBack(t *testing.T) {
	t.Parallel()
	cfg := openai.Config{BaseURL: refusedURL(t), Timeout: 2 * time.Second}
	stt, _ := openai.NewSTT(cfg)
	llm, _ := openai.NewLLM(cfg)
	tts, _ := openai.NewTTS(cfg)
	h := newHarness(t, baseDef())
	h.providers = &agent.Providers{STT: stt, LLM: llm, TTS: tts}
	h.opt.ReturnOnFailure = true
	start := h.call.Now()
	h.start()
	res := h.handedBack("tts")
	out, tick0 := h.call.Outbound()
	at := builtinAt(out)
	if at < 0 {
		t.Fatal("the built-in apology was not heard")
	}
	silence := h.call.TimeOfTick(tick0).Add(time.Duration(at) * time.Second / 8000).Sub(start)
	t.Logf("dead air before the apology: %v", silence)
	if silence > 2*time.Second {
		t.Errorf("the caller waited %v in silence", silence)
	}
	if got := res.Transcript[len(res.Transcript)-1]; got.Kind != agent.KindApology || got.Text != agent.BuiltinApologyText {
		t.Errorf("last turn %+v", got)
	}
	// The whole apology went out before Run returned.
	if got := len(out) - at; got < len(agent.BuiltinApology()) {
		t.Errorf("%d of %d samples of the apology sent", got, len(agent.BuiltinApology()))
	}
}

// The model fails in the middle of the call: the apology in the agent's
// voice (rendered at the start), then the session returns to the flow.
func TestLLMFailureHandsBackAfterApology(t *testing.T) {
	t.Parallel()
	h := newHarness(t, baseDef())
	h.opt.ReturnOnFailure = true
	h.stt.Script = []agenttest.Utterance{{Text: "Hello?"}}
	boom := errors.New("HTTP 500 from the model")
	h.llm.Script = []agenttest.Reply{{Err: boom}, {Err: boom}}
	h.start()
	h.waitFinalTurns(1)
	h.waitListening()
	h.call.Say(agenttest.Speech(time.Second))
	res := h.handedBack("llm")
	out, _ := h.call.Outbound()
	if !toneHeard(out, "difficulties.") {
		t.Error("the apology in the agent's voice was not heard")
	}
	if kinds := kindsOf(res.Transcript); kinds != "greeting,speech,reply,apology" {
		t.Errorf("turn kinds %v", kinds)
	}
}

// The speech endpoint fails for every request after the greeting was
// played: the reply cannot be voiced, and the apology (never rendered in
// the agent's voice, as the endpoint also failed it) is the built-in one.
func TestTTSFailureWithoutCachedApologyUsesBuiltin(t *testing.T) {
	t.Parallel()
	def := baseDef()
	def.StartingMessage = ""
	h, _ := openAIHarness(t, def, fake.OpenAIScript{
		Latency:     issueLatency,
		Transcripts: []fake.TranscriptReply{{Text: "Hello, anyone there?"}},
		Chat:        []fake.ChatReply{{Text: "Yes, I am here."}},
		SpeechFunc: func(fake.SpeechRequest) fake.SpeechReply {
			return fake.SpeechReply{Fault: fake.OpenAIFault{Status: 500, Message: "speech is down"}}
		},
	})
	h.opt.ReturnOnFailure = true
	h.start()
	h.call.Say(agenttest.Speech(time.Second))
	h.handedBack("tts")
	out, _ := h.call.Outbound()
	if builtinAt(out) < 0 {
		t.Error("the built-in apology was not heard")
	}
}

package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/agenttest"
	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/agent/openai"
)

// Tests here run the session with the real provider clients against the
// fakes in agent/fake, which speak the providers' wire protocols.

// issueLatency are the stand-in's latencies of issue 17's measurements.
var issueLatency = fake.OpenAILatency{
	ChatFirstToken:   300 * time.Millisecond,
	ChatTokenGap:     15 * time.Millisecond,
	Transcribe:       200 * time.Millisecond,
	SpeechFirstAudio: 150 * time.Millisecond,
}

// openAIHarness is a harness whose STT, LLM and TTS are the OpenAI clients
// talking to a fake OpenAI server scripted by script.
func openAIHarness(t *testing.T, def agent.Definition, script fake.OpenAIScript) (*harness, *fake.OpenAI) {
	t.Helper()
	f := fake.NewOpenAI(t, script)
	cfg := openai.Config{BaseURL: f.URL}
	stt, err := openai.NewSTT(cfg)
	if err != nil {
		t.Fatal(err)
	}
	llm, err := openai.NewLLM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tts, err := openai.NewTTS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, def)
	h.providers = &agent.Providers{STT: stt, LLM: llm, TTS: tts}
	return h, f
}

// The caller asks a question over the agent's reply with a transcription
// that is not streaming (one upload per utterance, no partials). The
// question is longer than the barge-in minimum plus the resume delay, so
// the resume timer is long due when the caller stops, and the transcript
// comes 200 ms after that: the agent must wait for it, not resume its old
// reply and drop the question (issue 17).
func TestBargeInQuestionWithUtteranceSTTReachesTheModel(t *testing.T) {
	t.Parallel()
	def := baseDef()
	def.StartingMessage = ""
	const question = "Wait, can you tell me when it will arrive?"
	h, f := openAIHarness(t, def, fake.OpenAIScript{
		Latency: issueLatency,
		Transcripts: []fake.TranscriptReply{
			{Text: "I would like to check the status of my order."},
			{Text: question},
		},
		Chat: []fake.ChatReply{
			{Text: longReply},
			{Text: "It will arrive tomorrow morning."},
		},
	})
	h.start()
	h.call.Say(agenttest.Speech(time.Second))
	first := h.agentStarted(0)
	h.waitFor("reply playing", func() bool { return h.call.Now().Sub(first) >= time.Second })
	h.call.Say(agenttest.Speech(2300 * time.Millisecond))
	h.finalReplyStarting("It will arrive")
	res := h.hangup()
	if users := userTexts(res.Transcript); len(users) != 2 || users[1] != question {
		t.Errorf("caller turns %q, want the question second; transcript %q", users, textsOf(res.Transcript))
	}
	reqs := f.ChatRequests()
	if len(reqs) != 2 || reqs[1].LastUserText() != question {
		t.Fatalf("%d chat requests; the model never saw the question", len(reqs))
	}
	if kinds := bargeInKinds(h); strings.Contains(kinds, "resume") {
		t.Errorf("barge-in events %q: the agent resumed over the question", kinds)
	}
}

// finalReplyStarting waits for a final reply turn beginning with prefix.
func (h *harness) finalReplyStarting(prefix string) {
	h.t.Helper()
	h.waitFor("a reply starting "+prefix, func() bool {
		for _, tt := range h.turns() {
			if tt.Kind == agent.KindReply && tt.Final && strings.HasPrefix(tt.Text, prefix) {
				return true
			}
		}
		return false
	})
}

func userTexts(ts []agent.Turn) []string {
	var out []string
	for _, tt := range ts {
		if tt.Role == agent.RoleUser {
			out = append(out, tt.Text)
		}
	}
	return out
}

// When the transcript of an interruption is later than the bounded wait,
// the agent resumes; the words that come after still become a turn: the
// agent stops again and answers them.
func TestWordsAfterResumeStillBecomeATurn(t *testing.T) {
	t.Parallel()
	def := baseDef()
	def.StartingMessage = ""
	const question = "Wait, can you tell me when it will arrive?"
	h, f := openAIHarness(t, def, fake.OpenAIScript{
		Latency: issueLatency,
		Transcripts: []fake.TranscriptReply{
			{Text: "I would like to check the status of my order."},
			{Text: question, Delay: 1500 * time.Millisecond},
		},
		Chat: []fake.ChatReply{{Text: longReply}, {Text: "It will arrive tomorrow morning."}},
	})
	h.opt.STTFinalTimeout = 400 * time.Millisecond
	h.start()
	h.call.Say(agenttest.Speech(time.Second))
	first := h.agentStarted(0)
	h.waitFor("reply playing", func() bool { return h.call.Now().Sub(first) >= time.Second })
	h.call.Say(agenttest.Speech(2300 * time.Millisecond))
	h.finalReplyStarting("It will arrive")
	res := h.hangup()
	if u := userTexts(res.Transcript); len(u) != 2 || u[1] != question {
		t.Errorf("caller turns %q; transcript %q", u, textsOf(res.Transcript))
	}
	if reqs := f.ChatRequests(); len(reqs) != 2 || reqs[1].LastUserText() != question {
		t.Fatalf("%d chat requests; the model never saw the question", len(reqs))
	}
	if kinds := bargeInKinds(h); kinds != "pause,flush,resume,confirmed" {
		t.Errorf("barge-in events %q, want the resume, then the late words confirming", kinds)
	}
	// The old reply was cut where the late words stopped it.
	if r := res.Transcript[1]; !r.Interrupted || r.Text == longReply {
		t.Errorf("first reply %+v, want it cut", r)
	}
}

// The caller talks at the very start of the greeting, inside the echo
// guard: not a barge-in, but the words are still transcribed and become
// the first turn (the greeting stops for them).
func TestSpeechOverGreetingBecomesATurn(t *testing.T) {
	t.Parallel()
	def := baseDef()
	def.BargeIn.EchoGuardMS = 2000 // the whole question falls inside it
	const question = "Hi, is the shop open on Sunday?"
	h, f := openAIHarness(t, def, fake.OpenAIScript{
		Latency:     issueLatency,
		Transcripts: []fake.TranscriptReply{{Text: question}},
		Chat:        []fake.ChatReply{{Text: "Yes, from ten to four."}},
	})
	h.start()
	h.agentStarted(0)
	h.call.Say(agenttest.Speech(1200 * time.Millisecond))
	h.finalReplyStarting("Yes, from ten")
	res := h.hangup()
	if u := userTexts(res.Transcript); len(u) != 1 || u[0] != question {
		t.Errorf("caller turns %q; transcript %q", u, textsOf(res.Transcript))
	}
	if reqs := f.ChatRequests(); len(reqs) != 1 || reqs[0].LastUserText() != question {
		t.Fatalf("the model never saw the question (%d requests)", len(reqs))
	}
}

// A transcript of the agent's own words (its echo, transcribed) is not a
// caller turn.
func TestEchoTranscriptIsNotATurn(t *testing.T) {
	t.Parallel()
	def := baseDef()
	def.BargeIn.EchoGuardMS = 2000
	h, f := openAIHarness(t, def, fake.OpenAIScript{
		Latency:     issueLatency,
		Transcripts: []fake.TranscriptReply{{Text: "Hello, how can I help?"}},
	})
	h.start()
	h.agentStarted(0)
	h.call.Say(agenttest.Speech(800 * time.Millisecond))
	h.waitFor("the transcription", func() bool { return len(f.Transcriptions()) == 1 })
	h.waitFinalTurns(1)
	h.waitListening()
	res := h.hangup()
	if len(res.Transcript) != 1 || res.Transcript[0].Interrupted {
		t.Errorf("transcript %q", textsOf(res.Transcript))
	}
	if n := len(f.ChatRequests()); n != 0 {
		t.Errorf("%d chat requests for the agent's own echo", n)
	}
}

// An upload that fails is retried on the recognizer's next stream with the
// same audio: the failure costs time, not the caller's words.
func TestFailedTranscriptionIsRetriedWithTheSameWords(t *testing.T) {
	t.Parallel()
	def := baseDef()
	def.StartingMessage = ""
	const said = "I would like to check the status of my order."
	h, f := openAIHarness(t, def, fake.OpenAIScript{
		Latency: issueLatency,
		Transcripts: []fake.TranscriptReply{
			{Fault: fake.OpenAIFault{Status: 503, Message: "overloaded"}},
			{Text: said},
		},
		Chat: []fake.ChatReply{{Text: "Let me look that up."}},
	})
	h.start()
	h.call.Say(agenttest.Speech(1500 * time.Millisecond))
	h.finalReplyStarting("Let me look")
	res := h.hangup()
	if u := userTexts(res.Transcript); len(u) != 1 || u[0] != said {
		t.Errorf("caller turns %q", u)
	}
	tr := f.Transcriptions()
	if len(tr) != 2 || len(tr[0].Audio) != len(tr[1].Audio) {
		t.Fatalf("%d transcriptions; want the same utterance twice", len(tr))
	}
	if res.Failure != nil {
		t.Errorf("failure %+v", res.Failure)
	}
}

// What the caller says over a transfer's announcement is kept in the
// transcript; the transfer goes ahead.
func TestWordsOverTransferAnnouncementAreKept(t *testing.T) {
	t.Parallel()
	h := newHarness(t, baseDef())
	h.stt.Script = []agenttest.Utterance{{Text: "Can you put me through to billing?"}, {Text: "Thanks, and please hurry."}}
	h.llm.Script = []agenttest.Reply{{Text: longReply, ToolCalls: []agent.ToolCall{transferCall("c1", "billing")}}}
	h.start()
	h.waitFinalTurns(1)
	h.waitListening()
	n := len(h.call.FirstPackets())
	h.call.Say(agenttest.Speech(time.Second))
	first := h.agentStarted(n)
	h.waitFor("the announcement playing", func() bool { return h.call.Now().Sub(first) >= 500*time.Millisecond })
	h.call.Say(agenttest.Speech(800 * time.Millisecond))
	res := h.result()
	if res.Reason != agent.EndTransfer {
		t.Fatalf("reason %q", res.Reason)
	}
	if u := userTexts(res.Transcript); len(u) != 2 || u[1] != "Thanks, and please hurry." {
		t.Errorf("caller turns %q", u)
	}
}

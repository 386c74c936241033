package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/agenttest"
	"github.com/voxbridge/voxbridge/media"
)

// longestPause is the longest run of silent 20 ms frames in pcm between its
// first and last audible frame.
func longestPause(pcm []int16) time.Duration {
	const frame = 160
	first, last := -1, -1
	for i := 0; i+frame <= len(pcm); i += frame {
		if media.RMS(pcm[i:i+frame]) > 100 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	longest, run := 0, 0
	for i := first; first >= 0 && i <= last; i += frame {
		if media.RMS(pcm[i:i+frame]) > 100 {
			run = 0
			continue
		}
		run++
		longest = max(longest, run)
	}
	return time.Duration(longest) * 20 * time.Millisecond
}

// bargeInKinds lists the barge-in events (flush, resume, confirmed).
func bargeInKinds(h *harness) string {
	var kinds []string
	for _, e := range h.eventsOf(agent.EventBargeIn) {
		kinds = append(kinds, e.Text)
	}
	return strings.Join(kinds, ",")
}

// backchannelOverReply plays a reply, has the caller say "uh-huh" for
// speech over it with no partial transcript (so nothing but its length can
// tell it from an interruption until its final), and returns the result.
func backchannelOverReply(t *testing.T, speech time.Duration, resumeAfterMS int) (*harness, agent.Result) {
	def := baseDef()
	def.StartingMessage = ""
	def.BargeIn.ResumeAfterMS = resumeAfterMS
	h := newHarness(t, def)
	h.stt.PartialAfter = time.Hour // the words come only with the final
	h.stt.Script = []agenttest.Utterance{{Text: "What times do you have?"}, {Text: "uh-huh"}}
	h.llm.Script = []agenttest.Reply{{Text: longReply}}
	h.start()
	h.call.Say(agenttest.Speech(time.Second))
	first := h.agentStarted(0)
	h.waitFor("reply playing", func() bool { return h.call.Now().Sub(first) >= time.Second })
	h.call.Say(agenttest.Speech(speech))
	h.waitFinalTurns(2)
	h.waitListening()
	return h, h.hangup()
}

// checkWholeReply fails t unless the reply was heard and stored whole, and
// the model was not asked to answer the backchannel.
func checkWholeReply(t *testing.T, h *harness, res agent.Result) {
	t.Helper()
	if len(res.Transcript) != 2 || res.Transcript[1].Text != longReply || res.Transcript[1].Interrupted {
		t.Errorf("transcript %q", textsOf(res.Transcript))
	}
	if n := len(h.llm.Requests()); n != 1 {
		t.Errorf("%d LLM requests; the backchannel must not start a turn", n)
	}
	out, _ := h.call.Outbound()
	for _, w := range []string{"noon", "lunch", "three."} {
		if !toneHeard(out, w) {
			t.Errorf("the reply was cut: %q never played", w)
		}
	}
}

// A 240 ms "uh-huh" is shorter than the 300 ms barge-in minimum. The VAD's
// hangover must not count toward it: the agent's audio is never flushed
// and plays without a pause.
func TestShortBackchannelDoesNotFlush(t *testing.T) {
	t.Parallel()
	h, res := backchannelOverReply(t, 240*time.Millisecond, 1500)
	if f := h.call.Flushes(); len(f) != 0 {
		t.Errorf("a 240 ms backchannel flushed the agent (%d flushes)", len(f))
	}
	if kinds := bargeInKinds(h); kinds != "" {
		t.Errorf("barge-in events %q, want none", kinds)
	}
	checkWholeReply(t, h, res)
	// The reply's own longest silence is the 40 ms between words (longer
	// only if the fake TTS fell behind a sentence); a flush would leave the
	// 1.5 s resume delay.
	out, _ := h.call.Outbound()
	if p := longestPause(out); p > 300*time.Millisecond {
		t.Errorf("the reply paused for %v", p)
	}
}

// A longer "uh-huh" reaches the minimum before its words are known, so the
// agent is flushed; once its final transcript shows only backchannel words
// the agent resumes at once, not after the (here 5 s) resume delay.
func TestBackchannelFinalResumesAtOnce(t *testing.T) {
	t.Parallel()
	h, res := backchannelOverReply(t, 500*time.Millisecond, 5000)
	if f := h.call.Flushes(); len(f) != 1 {
		t.Errorf("%d flushes, want 1", len(f))
	}
	if kinds := bargeInKinds(h); kinds != "flush,resume" {
		t.Errorf("barge-in events %q, want flush then resume", kinds)
	}
	checkWholeReply(t, h, res)
	// Silent from the flush until the final: the rest of the "uh-huh",
	// the STT's 200 ms and a frame or two; the resume timer would be 5 s.
	out, _ := h.call.Outbound()
	if p := longestPause(out); p > 2*time.Second {
		t.Errorf("the reply paused for %v: it waited for the resume timer", p)
	}
}

// The caller hangs up in the middle of a reply: the stored reply holds
// what went out before the hangup, not nothing.
func TestHangupMidReplyKeepsWhatWasHeard(t *testing.T) {
	t.Parallel()
	def := baseDef()
	def.StartingMessage = ""
	h := newHarness(t, def)
	h.stt.Script = []agenttest.Utterance{{Text: "What times do you have?"}}
	h.llm.Script = []agenttest.Reply{{Text: longReply}}
	h.start()
	h.call.Say(agenttest.Speech(time.Second))
	first := h.agentStarted(0)
	h.waitFor("reply playing", func() bool { return h.call.Now().Sub(first) >= 1500*time.Millisecond })
	res := h.hangup()
	var reply *agent.Turn
	for i, tt := range res.Transcript {
		if tt.Kind == agent.KindReply {
			reply = &res.Transcript[i]
		}
	}
	if reply == nil || reply.Text == "" || reply.Text == longReply || !strings.HasPrefix(longReply, reply.Text) {
		t.Fatalf("reply stored as %+v, want the start of %q that was played", reply, longReply)
	}
}

package agent_test

import (
	"slices"
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

// checkDeliveredWhole fails t unless the agent's outbound audio holds the
// rendered text's audio sample for sample, in order, with only silence
// inserted (the pause): nothing skipped and nothing said twice, which a
// tone check cannot tell.
func checkDeliveredWhole(t *testing.T, h *harness, out []int16, text string) {
	t.Helper()
	want, _ := h.tts.Render(text)
	start := -1
	for j := 0; j+160 <= len(out) && start < 0; j++ {
		if slices.Equal(out[j:j+160], want[:160]) {
			start = j
		}
	}
	if start < 0 {
		t.Fatal("the reply's first 20 ms never went out")
	}
	i, inserted := 0, 0
	for j := start; j < len(out) && i < len(want); j++ {
		switch {
		case out[j] == want[i]:
			i++
		case out[j] == 0:
			inserted++ // the pause (or the padding of a packet)
		default:
			t.Fatalf("after %d of %d samples of the reply, the caller got %d where %d was due: audio skipped or repeated",
				i, len(want), out[j], want[i])
		}
	}
	if i != len(want) {
		t.Fatalf("%d of %d samples of the reply were sent", i, len(want))
	}
	t.Logf("reply: %d samples delivered of %d rendered, %v of pause inserted", i, len(want), samplesDur(inserted))
}

// agentFramesAfter counts the frames of agent audio sent from the caller's
// onset frame on (onset and tick0 are ticks of the call): the stretch of
// agent audio the caller spoke into, word gaps of the fake voice bridged.
// False when no agent audio was playing at the onset.
func agentFramesAfter(out []int16, tick0, onset int64) (int, bool) {
	at := int(onset - tick0)
	for _, sp := range agenttest.Spans(agenttest.Active(out), 5) {
		if sp[0] <= at && at < sp[1] {
			return sp[1] - at, true
		}
	}
	return 0, false
}

func samplesDur(n int) time.Duration { return time.Duration(n) * time.Second / media.SampleRate }

// A 240 ms "uh-huh" is shorter than the 300 ms barge-in minimum. The agent
// pauses at its onset and resumes where it paused once it ends: never
// committed (the VAD's hangover does not count toward the minimum), the
// reply delivered whole, and the pause no longer than the "uh-huh" itself
// plus the VAD's 200 ms hangover and a few frames.
func TestShortBackchannelPausesAndResumes(t *testing.T) {
	t.Parallel()
	h, res := backchannelOverReply(t, 240*time.Millisecond, 1500)
	if f := h.call.Flushes(); len(f) != 1 {
		t.Errorf("%d flushes, want the one pause", len(f))
	}
	if kinds := bargeInKinds(h); kinds != "pause,resume" {
		t.Errorf("barge-in events %q, want pause then resume", kinds)
	}
	checkWholeReply(t, h, res)
	out, _ := h.call.Outbound()
	checkDeliveredWhole(t, h, out, longReply)
	// Committing would leave the 1.5 s resume delay.
	if p := longestPause(out); p > 240*time.Millisecond+200*time.Millisecond+100*time.Millisecond {
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
	if kinds := bargeInKinds(h); kinds != "pause,flush,resume" {
		t.Errorf("barge-in events %q, want pause, flush, resume", kinds)
	}
	checkWholeReply(t, h, res)
	out, _ := h.call.Outbound()
	checkDeliveredWhole(t, h, out, longReply)
	// Silent from the flush until the final: the rest of the "uh-huh",
	// the STT's 200 ms and a frame or two; the resume timer would be 5 s.
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

// After a backchannel's pause the agent starts again, and so does its
// echo: speech starting within the echo guard of the resume is ignored,
// so echo cannot make the agent stutter pause after pause.
func TestEchoGuardAfterResume(t *testing.T) {
	t.Parallel()
	def := baseDef()
	def.StartingMessage = ""
	def.BargeIn.EchoGuardMS = 800 // wide, so the test's own wake-up cannot miss it
	h := newHarness(t, def)
	h.stt.Script = []agenttest.Utterance{{Text: "What times do you have?"}, {Text: "uh-huh", Partial: "uh-huh"}, {Text: "We have tables at six,"}} // the agent's own words coming back
	h.llm.Script = []agenttest.Reply{{Text: longReply}}
	h.start()
	h.call.Say(agenttest.Speech(time.Second))
	first := h.agentStarted(0)
	h.waitFor("reply playing", func() bool { return h.call.Now().Sub(first) >= time.Second })
	h.call.Say(agenttest.Speech(240 * time.Millisecond))
	h.waitFor("the resume", func() bool { return strings.HasSuffix(bargeInKinds(h), "resume") })
	// Echo of the resumed audio: long enough to interrupt were it speech.
	h.call.Say(agenttest.Speech(600 * time.Millisecond))
	h.waitFor("the reply to end", func() bool {
		ts := h.turns()
		return len(ts) >= 2 && ts[1].Final
	})
	h.waitListening()
	res := h.hangup()
	if kinds := bargeInKinds(h); kinds != "pause,resume" {
		t.Errorf("barge-in events %q, want one pause and its resume", kinds)
	}
	checkWholeReply(t, h, res)
	out, _ := h.call.Outbound()
	checkDeliveredWhole(t, h, out, longReply)
}

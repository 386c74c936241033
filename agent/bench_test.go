package agent_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/agenttest"
	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/agent/openai"
)

// Fixed provider latencies of the benchmark, as in the issue: the final
// transcript 200 ms after the caller stops, the model's first token 300 ms
// after the request, the first audio 150 ms after the text.
const (
	benchSTT = 200 * time.Millisecond
	benchLLM = 300 * time.Millisecond
	benchTTS = 150 * time.Millisecond
)

// benchSession runs a pipeline session on real time (not the fake call's
// frame clock, so every timestamp is as precise as the machine's) and
// returns it with its call and a channel of its latency rows.
func benchSession(b *testing.B, def agent.Definition, utterances int, reply func(n int) string) (*agenttest.Call, chan agent.TurnLatency, func() agent.Result) {
	call := agenttest.NewCall(b)
	script := make([]agenttest.Utterance, utterances)
	for i := range script {
		script[i] = agenttest.Utterance{Text: "Is there a table free tonight?"}
	}
	stt := &agenttest.STT{Script: script, FinalAfter: benchSTT}
	n := 0
	llm := &agenttest.LLM{FirstToken: benchLLM, Respond: func(agent.LLMRequest) agenttest.Reply {
		n++
		return agenttest.Reply{Text: reply(n)}
	}}
	tts := &agenttest.TTS{FirstAudio: benchTTS}
	return runBenchSession(b, def, agent.Providers{STT: stt, LLM: llm, TTS: tts}, call, utterances+1)
}

// runBenchSession starts a session on call with providers and returns
// call, a channel of its latency rows (room for rows) and a stop that
// hangs up and returns the result.
func runBenchSession(b *testing.B, def agent.Definition, providers agent.Providers, call *agenttest.Call, rowsCap int) (*agenttest.Call, chan agent.TurnLatency, func() agent.Result) {
	rows := make(chan agent.TurnLatency, rowsCap)
	s, err := agent.NewSession(def, providers, call, agent.Options{
		Cache: &agent.AudioCache{},
		OnEvent: func(e agent.Event) {
			if e.Type == agent.EventLatency {
				rows <- *e.Latency
			}
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan agent.Result, 1)
	go func() {
		res, _ := s.Run(context.Background())
		done <- res
	}()
	return call, rows, func() agent.Result {
		call.Close()
		return <-done
	}
}

func waitUntil(b *testing.B, what string, cond func() bool) {
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func report(b *testing.B, name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	b.ReportMetric(float64(agent.Percentile(ds, 50).Microseconds())/1000, name+"-p50-ms")
	b.ReportMetric(float64(agent.Percentile(ds, 95).Microseconds())/1000, name+"-p95-ms")
}

// BenchmarkVoiceToVoiceOverhead measures the pipeline's own share of
// voice-to-voice latency: for each caller turn, voice-to-voice (first
// agent RTP packet − caller speech end) minus the endpointing delay and
// the fixed model and TTS latencies. What is left is the session's
// hand-offs plus the wait for the next 20 ms send tick.
//
//	go test -run '^$' -bench VoiceToVoice -benchtime 40x ./agent/
func BenchmarkVoiceToVoiceOverhead(b *testing.B) {
	def := baseDef()
	def.StartingMessage = ""
	call, rows, stop := benchSession(b, def, b.N, func(int) string { return "Yes." })
	var overhead, v2v []time.Duration
	for i := 0; i < b.N; i++ {
		call.Say(agenttest.Speech(800 * time.Millisecond))
		var l agent.TurnLatency
		select {
		case l = <-rows:
		case <-time.After(wait):
			b.Fatal("no reply")
		}
		// Let the reply finish before the next turn.
		waitUntil(b, "the reply to play out", func() bool { return call.Queued() == 0 })
		time.Sleep(300 * time.Millisecond)
		v2v = append(v2v, l.VoiceToVoice)
		overhead = append(overhead, l.VoiceToVoice-l.EndpointDelay-benchLLM-benchTTS)
	}
	b.StopTimer()
	res := stop()
	if len(res.Latency) != b.N {
		b.Fatalf("%d rows for %d turns", len(res.Latency), b.N)
	}
	report(b, "overhead", overhead)
	report(b, "v2v", v2v)
}

// BenchmarkBargeInStop measures how long agent audio keeps going after the
// caller starts talking over it: from the caller's speech onset (the frame
// it starts in) to the end of the last frame carrying agent audio. It
// includes detection: the VAD's confirmation of speech, at which the agent
// pauses (the barge-in minimum, 300 ms by default, only decides whether the
// pause becomes an interruption or resumes).
//
//	go test -run '^$' -bench BargeInStop -benchtime 20x ./agent/
func BenchmarkBargeInStop(b *testing.B) {
	for _, minSpeech := range []int{300, 200} {
		b.Run(fmt.Sprintf("min_speech_%dms", minSpeech), func(b *testing.B) { benchBargeIn(b, minSpeech) })
	}
}

func benchBargeIn(b *testing.B, minSpeechMS int) {
	def := baseDef()
	def.StartingMessage = ""
	def.BargeIn.MinSpeechMS = minSpeechMS
	call, rows, stop := benchSession(b, def, 2*b.N, func(n int) string {
		if n%2 == 1 {
			return longReply
		}
		return "Yes."
	})
	var stops []time.Duration
	for i := 0; i < b.N; i++ {
		// A question, a long answer, and an interruption a second into it.
		call.Say(agenttest.Speech(800 * time.Millisecond))
		select {
		case <-rows:
		case <-time.After(wait):
			b.Fatal("no reply")
		}
		before := len(call.Flushes())
		time.Sleep(time.Second)
		if call.Queued() == 0 {
			b.Fatal("the answer ended before the interruption")
		}
		onset, _ := call.Say(agenttest.Speech(time.Second))
		waitUntil(b, "the flush", func() bool { return len(call.Flushes()) > before })
		time.Sleep(100 * time.Millisecond)
		out, tick0 := call.Outbound()
		n, ok := agentFramesAfter(out, tick0, onset)
		if !ok {
			b.Fatal("no agent audio at the caller's onset")
		}
		// From the start of the onset frame (a frame before its tick) to
		// the end of the agent's last one.
		stops = append(stops, time.Duration(n+1)*20*time.Millisecond)
		// Drain the second turn's reply and let it finish.
		select {
		case <-rows:
		case <-time.After(wait):
			b.Fatal("no second reply")
		}
		waitUntil(b, "the reply to play out", func() bool { return call.Queued() == 0 })
		time.Sleep(300 * time.Millisecond)
	}
	b.StopTimer()
	stop()
	report(b, "stop", stops)
}

// BenchmarkVoiceToVoiceOpenAI measures voice-to-voice with the real OpenAI
// clients against the fake server at the latencies of issue 17
// (transcription 200 ms, first token 300 ms, tokens every 15 ms, speech
// first audio 150 ms) and a one-sentence reply without a comma: the first
// speech request goes out at the first clause break or after 4 words ("first-clause") or,
// as before, at the sentence's end ("sentence").
//
//	go test -run '^$' -bench VoiceToVoiceOpenAI -benchtime 20x ./agent/
func BenchmarkVoiceToVoiceOpenAI(b *testing.B) {
	for _, c := range []struct {
		name  string
		words int
	}{{"first-clause", 0}, {"sentence", -1}} {
		b.Run(c.name, func(b *testing.B) {
			const said = "I would like to check the status of my order."
			f := fake.NewOpenAI(b, fake.OpenAIScript{
				Latency: issueLatency,
				TranscriptFunc: func(fake.TranscriptionRequest) fake.TranscriptReply {
					return fake.TranscriptReply{Text: said}
				},
				ChatFunc: func(fake.ChatRequest) fake.ChatReply {
					return fake.ChatReply{Text: "You said " + strings.ToLower(said[:1]) + said[1:]}
				},
			})
			cfg := openai.Config{BaseURL: f.URL, FirstSegmentWords: c.words}
			stt, _ := openai.NewSTT(cfg)
			llm, _ := openai.NewLLM(cfg)
			tts, _ := openai.NewTTS(cfg)
			def := baseDef()
			def.StartingMessage = ""
			call, rows, stop := runBenchSession(b, def, agent.Providers{STT: stt, LLM: llm, TTS: tts}, agenttest.NewCall(b), b.N+1)
			var v2v []time.Duration
			for i := 0; i < b.N; i++ {
				call.Say(agenttest.Speech(1200 * time.Millisecond))
				var l agent.TurnLatency
				select {
				case l = <-rows:
				case <-time.After(wait):
					b.Fatal("no reply")
				}
				waitUntil(b, "the reply to play out", func() bool { return call.Queued() == 0 })
				time.Sleep(300 * time.Millisecond)
				v2v = append(v2v, l.VoiceToVoice)
			}
			b.StopTimer()
			stop()
			report(b, "v2v", v2v)
		})
	}
}

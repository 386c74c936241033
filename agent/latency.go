package agent

import (
	"encoding/json"
	"slices"
	"time"
)

// TurnLatency is where the time went between the caller finishing and the
// agent's first audio leaving our RTP edge. Times are wall-clock; a zero
// time means that step did not happen in this turn (e.g. no STT final for a
// DTMF turn, no first packet when the caller interrupted first).
type TurnLatency struct {
	Turn         int       `json:"turn"`                     // index of the agent's turn in the transcript
	SpeechEnd    time.Time `json:"speech_end,omitzero"`      // the caller stopped speaking (local VAD)
	Endpoint     time.Time `json:"endpoint,omitzero"`        // we decided the turn was over
	STTFinal     time.Time `json:"stt_final,omitzero"`       // the last final transcript of the turn arrived
	LLMRequest   time.Time `json:"llm_request,omitzero"`     // the LLM request was made
	LLMFirstText time.Time `json:"llm_first_token,omitzero"` // first text delta or tool call
	TTSFirstText time.Time `json:"tts_first_text,omitzero"`  // first text handed to the TTS
	TTSFirst     time.Time `json:"tts_first_audio,omitzero"`
	FirstPacket  time.Time `json:"first_packet,omitzero"` // first RTP packet carrying agent audio
	Speculative  bool      `json:"speculative,omitempty"` // the reply was started before the endpoint

	// Durations derived from the times above, in milliseconds on the wire.
	EndpointDelay time.Duration `json:"-"` // Endpoint − SpeechEnd
	STTDelay      time.Duration `json:"-"` // STTFinal − SpeechEnd
	LLMDelay      time.Duration `json:"-"` // LLMFirstText − LLMRequest
	TTSDelay      time.Duration `json:"-"` // TTSFirst − TTSFirstText
	VoiceToVoice  time.Duration `json:"-"` // FirstPacket − SpeechEnd
}

// MarshalJSON writes the durations as milliseconds.
func (l TurnLatency) MarshalJSON() ([]byte, error) {
	type plain TurnLatency
	return json.Marshal(struct {
		plain
		EndpointDelay float64 `json:"endpoint_ms"`
		STTDelay      float64 `json:"stt_ms"`
		LLMDelay      float64 `json:"llm_first_token_ms"`
		TTSDelay      float64 `json:"tts_first_audio_ms"`
		VoiceToVoice  float64 `json:"voice_to_voice_ms"`
	}{plain(l), ms(l.EndpointDelay), ms(l.STTDelay), ms(l.LLMDelay), ms(l.TTSDelay), ms(l.VoiceToVoice)})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// finish computes the derived durations.
func (l *TurnLatency) finish() {
	sub := func(a, b time.Time) time.Duration {
		if a.IsZero() || b.IsZero() {
			return 0
		}
		return a.Sub(b)
	}
	l.EndpointDelay = sub(l.Endpoint, l.SpeechEnd)
	l.STTDelay = sub(l.STTFinal, l.SpeechEnd)
	l.LLMDelay = sub(l.LLMFirstText, l.LLMRequest)
	l.TTSDelay = sub(l.TTSFirst, l.TTSFirstText)
	l.VoiceToVoice = sub(l.FirstPacket, l.SpeechEnd)
}

// LatencySummary summarises a call's voice-to-voice latency over the turns
// that measured it.
type LatencySummary struct {
	Turns           int           `json:"turns"`
	VoiceToVoiceP50 time.Duration `json:"-"`
	VoiceToVoiceP95 time.Duration `json:"-"`
	EndpointP50     time.Duration `json:"-"`
	LLMP50          time.Duration `json:"-"`
	TTSP50          time.Duration `json:"-"`
}

// MarshalJSON writes the durations as milliseconds.
func (s LatencySummary) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Turns           int     `json:"turns"`
		VoiceToVoiceP50 float64 `json:"voice_to_voice_p50_ms"`
		VoiceToVoiceP95 float64 `json:"voice_to_voice_p95_ms"`
		EndpointP50     float64 `json:"endpoint_p50_ms"`
		LLMP50          float64 `json:"llm_first_token_p50_ms"`
		TTSP50          float64 `json:"tts_first_audio_p50_ms"`
	}{s.Turns, ms(s.VoiceToVoiceP50), ms(s.VoiceToVoiceP95), ms(s.EndpointP50), ms(s.LLMP50), ms(s.TTSP50)})
}

// SummarizeLatency computes p50/p95 over the rows with a voice-to-voice
// measurement.
func SummarizeLatency(rows []TurnLatency) LatencySummary {
	var v2v, ep, llm, tts []time.Duration
	for _, r := range rows {
		if r.SpeechEnd.IsZero() || r.FirstPacket.IsZero() {
			continue
		}
		v2v = append(v2v, r.VoiceToVoice)
		ep = append(ep, r.EndpointDelay)
		llm = append(llm, r.LLMDelay)
		tts = append(tts, r.TTSDelay)
	}
	return LatencySummary{
		Turns:           len(v2v),
		VoiceToVoiceP50: Percentile(v2v, 50),
		VoiceToVoiceP95: Percentile(v2v, 95),
		EndpointP50:     Percentile(ep, 50),
		LLMP50:          Percentile(llm, 50),
		TTSP50:          Percentile(tts, 50),
	}
}

// Percentile returns the p-th percentile (nearest rank) of ds, 0 if empty.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return s[max(0, min(rank, len(s)-1))]
}

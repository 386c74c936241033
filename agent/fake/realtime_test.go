package fake

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voxbridge/voxbridge/media"
)

// rtRawClient is a bare websocket client, to check the fake's wire format
// without our client in the way.
type rtRawClient struct {
	t  *testing.T
	ws *websocket.Conn
}

func rtDialRaw(t *testing.T, url string, header http.Header) *rtRawClient {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url, header)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", url, err, status)
	}
	t.Cleanup(func() { ws.Close() })
	return &rtRawClient{t: t, ws: ws}
}

func (c *rtRawClient) send(v any) {
	c.t.Helper()
	if err := c.ws.WriteJSON(v); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the next server event.
func (c *rtRawClient) next() map[string]any {
	c.t.Helper()
	c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ev map[string]any
	if err := c.ws.ReadJSON(&ev); err != nil {
		c.t.Fatalf("reading: %v", err)
	}
	return ev
}

// until reads events up to one of type typ and returns the types seen.
func (c *rtRawClient) until(typ string) ([]string, map[string]any) {
	c.t.Helper()
	var types []string
	for {
		ev := c.next()
		types = append(types, ev["type"].(string))
		if ev["type"] == typ {
			return types, ev
		}
	}
}

func rtULawB64(pcm []int16) string {
	return base64.StdEncoding.EncodeToString(media.PCMU.Encode(nil, pcm))
}

func TestRealtimeFakeEventNamesPerProtocol(t *testing.T) {
	for _, beta := range []bool{false, true} {
		f := NewRealtime(t, RealtimeScript{Responses: []RealtimeReply{{Text: "Hello."}}})
		h := http.Header{}
		session := map[string]any{"type": "realtime", "audio": map[string]any{
			"input":  map[string]any{"format": map[string]any{"type": "audio/pcmu"}, "turn_detection": map[string]any{"type": "server_vad"}},
			"output": map[string]any{"format": map[string]any{"type": "audio/pcmu"}, "voice": "alloy"}}}
		if beta {
			h.Set("OpenAI-Beta", "realtime=v1")
			session = map[string]any{"input_audio_format": "g711_ulaw", "output_audio_format": "g711_ulaw", "turn_detection": map[string]any{"type": "server_vad"}}
		}
		c := rtDialRaw(t, f.URL+"/realtime?model=m", h)
		if ev := c.next(); ev["type"] != "session.created" {
			t.Fatalf("first event %v", ev)
		}
		c.send(map[string]any{"type": "session.update", "session": session})
		if ev := c.next(); ev["type"] != "session.updated" {
			t.Fatalf("after update: %v", ev)
		}
		c.send(map[string]any{"type": "response.create"})
		types, _ := c.until("response.done")
		audio, transcript := "response.output_audio.delta", "response.output_audio_transcript.delta"
		if beta {
			audio, transcript = "response.audio.delta", "response.audio_transcript.delta"
		}
		if !slices.Contains(types, audio) || !slices.Contains(types, transcript) || types[0] != "response.created" {
			t.Errorf("beta=%v: events %v", beta, types)
		}
	}
}

func TestRealtimeFakeVADAndTranscripts(t *testing.T) {
	f := NewRealtime(t, RealtimeScript{TranscriptFunc: func(a []int16) string {
		if media.ToneLevel(a, 700) > 0.1 {
			return "seven hundred"
		}
		return "?"
	}})
	c := rtDialRaw(t, f.URL+"/realtime?intent=transcription", nil)
	c.next()
	c.send(map[string]any{"type": "session.update", "session": map[string]any{"type": "transcription", "audio": map[string]any{
		"input": map[string]any{"format": map[string]any{"type": "audio/pcmu"}, "turn_detection": map[string]any{"type": "server_vad", "silence_duration_ms": 300}}}}})
	c.until("session.updated")
	pcm := append(append(media.Silence(400*time.Millisecond), media.Tone(700, 500*time.Millisecond, 0.3)...), media.Silence(400*time.Millisecond)...)
	for i := 0; i < len(pcm); i += 160 {
		c.send(map[string]any{"type": "input_audio_buffer.append", "audio": rtULawB64(pcm[i : i+160])})
	}
	_, started := c.until("input_audio_buffer.speech_started")
	_, stopped := c.until("input_audio_buffer.speech_stopped")
	// Audio time: speech from 400 to 900 ms (reported once 300 ms of
	// silence followed).
	if started["audio_start_ms"].(float64) != 400 || stopped["audio_end_ms"].(float64) != 900 {
		t.Errorf("speech %v..%v ms, want 400..900", started["audio_start_ms"], stopped["audio_end_ms"])
	}
	types, done := c.until("conversation.item.input_audio_transcription.completed")
	if done["transcript"] != "seven hundred" || done["item_id"] != started["item_id"] || !slices.Contains(types, "input_audio_buffer.committed") {
		t.Errorf("events %v, completed %v", types, done)
	}
	// Transcription sessions do not answer.
	c.send(map[string]any{"type": "response.create"})
	if _, ev := c.until("error"); !strings.Contains(ev["error"].(map[string]any)["message"].(string), "transcription session") {
		t.Errorf("error %v", ev)
	}
}

func TestRealtimeFakeRefusesBadClientEvents(t *testing.T) {
	f := NewRealtime(t, RealtimeScript{})
	c := rtDialRaw(t, f.URL+"/realtime?model=m", nil)
	c.next()
	for _, tc := range []struct {
		ev   map[string]any
		code string
	}{
		{map[string]any{"type": "session.update", "session": map[string]any{"type": "realtime", "audio": map[string]any{
			"input": map[string]any{"format": map[string]any{"type": "audio/pcm", "rate": 24000}}}}}, "invalid_value"},
		{map[string]any{"type": "session.update", "session": map[string]any{"type": "transcription"}}, "invalid_value"},
		{map[string]any{"type": "input_audio_buffer.append", "audio": "%%%"}, "invalid_value"},
		{map[string]any{"type": "input_audio_buffer.commit"}, "input_audio_buffer_commit_empty"},
		{map[string]any{"type": "conversation.item.truncate", "item_id": "nope", "content_index": 0, "audio_end_ms": 10}, "item_truncate_invalid_item_id"},
		{map[string]any{"type": "conversation.item.create", "item": map[string]any{"type": "message"}}, "invalid_value"},
		{map[string]any{"type": "made.up"}, "invalid_event"},
	} {
		c.send(tc.ev)
		_, ev := c.until("error")
		if got := ev["error"].(map[string]any)["code"]; got != tc.code {
			b, _ := json.Marshal(tc.ev)
			t.Errorf("%s: code %v, want %s", b, got, tc.code)
		}
	}
	if n := f.Sessions()[0].Config.Updates; n != 0 {
		t.Errorf("%d invalid session updates were applied", n)
	}
	// A speech session needs a model.
	_, resp, err := websocket.DefaultDialer.Dial(f.URL+"/realtime", nil)
	if err == nil || resp == nil || resp.StatusCode != 400 {
		t.Errorf("dial without model: %v", err)
	}
}

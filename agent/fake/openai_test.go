package fake

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/internal/audio"
	"github.com/voxbridge/voxbridge/media"
)

func oaiPost(t *testing.T, url, contentType string, body []byte, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// The stream is the API's: data lines, chunk objects with finish_reason
// null until the last, tool-call deltas keyed by index, then [DONE].
func TestOpenAIChatStreamWireFormat(t *testing.T) {
	o := NewOpenAI(t, OpenAIScript{APIKey: "k-123", Chat: []ChatReply{{
		Text: "Hi, there.", ToolCalls: []agent.ToolCall{{Name: "end_call", Arguments: `{"reason":"done"}`}},
	}}})
	resp, body := oaiPost(t, o.URL+"/chat/completions", "application/json",
		[]byte(`{"model":"m","stream":true,"messages":[{"role":"user","content":[{"type":"text","text":"hello"}]}]}`),
		"Authorization", "Bearer k-123")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var datas []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			d, ok := strings.CutPrefix(line, "data: ")
			if !ok {
				t.Fatalf("line %q is not an SSE data line", line)
			}
			datas = append(datas, d)
		}
	}
	if datas[len(datas)-1] != "[DONE]" {
		t.Fatalf("stream does not end with [DONE]: %q", datas[len(datas)-1])
	}
	var text, args string
	var finishes []any
	for _, d := range datas[:len(datas)-1] {
		var c struct {
			Object  string `json:"object"`
			Choices []struct {
				Delta struct {
					Content   string            `json:"content"`
					ToolCalls []oaiWireToolCall `json:"tool_calls"`
				} `json:"delta"`
				FinishReason any `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(d), &c); err != nil || c.Object != "chat.completion.chunk" || len(c.Choices) != 1 {
			t.Fatalf("chunk %s: %v", d, err)
		}
		text += c.Choices[0].Delta.Content
		for _, tc := range c.Choices[0].Delta.ToolCalls {
			if tc.Index == nil || *tc.Index != 0 {
				t.Errorf("tool-call delta without index 0: %s", d)
			}
			args += tc.Function.Arguments
		}
		finishes = append(finishes, c.Choices[0].FinishReason)
	}
	if text != "Hi, there." || args != `{"reason":"done"}` {
		t.Errorf("text %q args %q", text, args)
	}
	for i, f := range finishes {
		if (i == len(finishes)-1) != (f != nil) {
			t.Errorf("chunk %d finish_reason %v", i, f)
		}
	}
	if finishes[len(finishes)-1] != "tool_calls" {
		t.Errorf("finish reason %v", finishes[len(finishes)-1])
	}
	if got := o.ChatRequests(); len(got) != 1 || got[0].LastUserText() != "hello" {
		t.Errorf("recorded %+v", got)
	}
}

func TestOpenAIChatNonStreaming(t *testing.T) {
	o := NewOpenAI(t, OpenAIScript{ChatFunc: func(r ChatRequest) ChatReply { return ChatReply{Text: "echo: " + r.LastUserText()} }})
	resp, body := oaiPost(t, o.URL+"/chat/completions", "application/json", []byte(`{"model":"m","messages":[{"role":"user","content":"ping"}]}`))
	var c struct {
		Object  string `json:"object"`
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(body, &c); err != nil || resp.StatusCode != 200 || c.Object != "chat.completion" ||
		c.Choices[0].Message.Content != "echo: ping" || c.Choices[0].FinishReason != "stop" {
		t.Errorf("status %d body %s", resp.StatusCode, body)
	}
}

// Requests the real API would refuse are refused with its error shape.
func TestOpenAIRejectsWhatTheAPIRejects(t *testing.T) {
	o := NewOpenAI(t, OpenAIScript{APIKey: "k-123", Chat: []ChatReply{{Text: "x"}}})
	auth := []string{"Authorization", "Bearer k-123"}
	cases := []struct {
		name, path, body string
		header           []string
		status           int
		msg              string
	}{
		{"no key", "/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, nil, 401, "Incorrect API key"},
		{"wrong key echoed", "/chat/completions", `{}`, []string{"Authorization", "Bearer k-999"}, 401, "k-999"},
		{"no model", "/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`, auth, 400, "model"},
		{"no messages", "/chat/completions", `{"model":"m","messages":[]}`, auth, 400, "messages"},
		{"orphan tool result", "/chat/completions", `{"model":"m","messages":[{"role":"tool","tool_call_id":"c1","content":"x"}]}`, auth, 400, "tool_calls"},
		{"bad role", "/chat/completions", `{"model":"m","messages":[{"role":"robot","content":"x"}]}`, auth, 400, "robot"},
		{"bad json", "/chat/completions", `{`, auth, 400, "parse"},
		{"speech not pcm", "/audio/speech", `{"model":"m","input":"hi","voice":"v","response_format":"mp3"}`, auth, 400, "pcm"},
		{"speech no input", "/audio/speech", `{"model":"m","input":" ","voice":"v","response_format":"pcm"}`, auth, 400, "input"},
		{"unknown path", "/embeddings", `{}`, auth, 404, "Invalid URL"},
	}
	for _, c := range cases {
		resp, body := oaiPost(t, o.URL+c.path, "application/json", []byte(c.body), c.header...)
		var e struct {
			Error struct {
				Message, Type string
			} `json:"error"`
		}
		if resp.StatusCode != c.status || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error.Message, c.msg) || e.Error.Type == "" {
			t.Errorf("%s: status %d body %s; want %d mentioning %q", c.name, resp.StatusCode, body, c.status, c.msg)
		}
	}
	if n := len(o.ChatRequests()); n != 0 {
		t.Errorf("%d refused requests were recorded", n)
	}
}

func oaiTranscriptionBody(t *testing.T, fields map[string]string, wav []byte) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	if wav != nil {
		fw, _ := mw.CreateFormFile("file", "a.wav")
		fw.Write(wav)
	}
	mw.Close()
	return mw.FormDataContentType(), b.Bytes()
}

func TestOpenAITranscriptionFormats(t *testing.T) {
	o := NewOpenAI(t, OpenAIScript{Transcripts: []TranscriptReply{{Text: "one"}, {Text: "two"}, {Text: "three"}}})
	wav := audio.EncodeWAV(audio.Tone(500, 16000, 300*time.Millisecond, 0.5), 16000)
	for _, c := range []struct{ format, want string }{{"json", `{"text":"one"}`}, {"text", "two"}, {"verbose_json", `"text":"three"`}} {
		ct, body := oaiTranscriptionBody(t, map[string]string{"model": "whisper-1", "response_format": c.format}, wav)
		resp, got := oaiPost(t, o.URL+"/audio/transcriptions", ct, body)
		if resp.StatusCode != 200 || !strings.Contains(string(got), c.want) {
			t.Errorf("%s: %d %s", c.format, resp.StatusCode, got)
		}
	}
	if r := o.Transcriptions()[0]; len(r.Audio) != 2400 || media.ToneLevel(r.Audio, 500) < 0.45 || r.Filename != "a.wav" {
		t.Errorf("a 16 kHz upload decoded to %d samples at 8 kHz, level %.2f", len(r.Audio), media.ToneLevel(r.Audio, 500))
	}
	if got := o.Heard(); !slices.Equal(got, []string{"one", "two", "three"}) {
		t.Errorf("heard %q", got)
	}
	// No file, a non-WAV file and a too-short clip are refused.
	for name, wav := range map[string][]byte{"no file": nil, "not audio": []byte("hello"), "too short": audio.EncodeWAV(make([]int16, 400), 8000)} {
		ct, body := oaiTranscriptionBody(t, map[string]string{"model": "whisper-1"}, wav)
		if resp, got := oaiPost(t, o.URL+"/audio/transcriptions", ct, body); resp.StatusCode != 400 {
			t.Errorf("%s: %d %s", name, resp.StatusCode, got)
		}
	}
}

// Speech is streamed in ChunkBytes pieces of 24 kHz little-endian PCM.
func TestOpenAISpeechStreamsPCM(t *testing.T) {
	o := NewOpenAI(t, OpenAIScript{Speech: []SpeechReply{{ChunkBytes: 1000, ChunkGap: 5 * time.Millisecond}}})
	resp, err := http.Post(o.URL+"/audio/speech", "application/json",
		strings.NewReader(`{"model":"tts-1","input":"Hello there","voice":"alloy","response_format":"pcm"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pcm []byte
	reads := 0
	buf := make([]byte, 1<<16)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			reads++
			pcm = append(pcm, buf[:n]...)
		}
		if err != nil {
			break
		}
	}
	want := audio.PCMBytes(nil, OpenAISpeechTone("Hello there"))
	if !bytes.Equal(pcm, want) {
		t.Errorf("got %d bytes, want the %d bytes of OpenAISpeechTone", len(pcm), len(want))
	}
	if reads < len(want)/1000/2 {
		t.Errorf("body arrived in %d reads; not streamed", reads)
	}
	if got := o.SpeechRequests(); len(got) != 1 || got[0].Voice != "alloy" || got[0].Input != "Hello there" || got[0].Aborted {
		t.Errorf("recorded %+v", got)
	}
}

func TestSplitTokens(t *testing.T) {
	got := SplitTokens("Hi, there!  How's it going?")
	want := []string{"Hi", ",", " there", "!", "  How", "'", "s", " it", " going", "?"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if strings.Join(got, "") != "Hi, there!  How's it going?" {
		t.Error("tokens do not rebuild the text")
	}
}

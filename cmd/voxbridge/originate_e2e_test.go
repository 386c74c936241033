package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/agent/fake"
	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// originateServer starts voxbridge with recordings in a temporary
// directory and extensions 1002 and 1003 (password extPass) for the
// test phones the calls ring.
func originateServer(t *testing.T, agents *flow.Agents) *instance {
	t.Helper()
	inst, cfg := testServerWith(t, instanceOptions{agents: agents}, func(c *serveConfig) { c.RecordDir = t.TempDir() })
	for _, num := range []string{"1002", "1003"} {
		ext := store.Extension{Number: num, Enabled: true}
		if err := ext.SetPassword(cfg.SIPRealm, extPass); err != nil {
			t.Fatal(err)
		}
		if err := inst.db.CreateExtension(context.Background(), &ext); err != nil {
			t.Fatal(err)
		}
	}
	return inst
}

func testAPIClient(inst *instance) *apiClient {
	return &apiClient{base: "http://" + inst.HTTP.String(), key: testAPIKey, http: &http.Client{Timeout: 10 * time.Second}}
}

// postCall starts an outbound call over the API and checks the immediate
// answer: the new outgoing call, not answered yet.
func postCall(t *testing.T, inst *instance, body string) store.Call {
	t.Helper()
	var call store.Call
	if err := testAPIClient(inst).do("POST", "/v1/calls", json.RawMessage(body), &call); err != nil {
		t.Fatalf("POST /v1/calls: %v", err)
	}
	if call.ID == "" || call.Direction != store.DirectionOutgoing || call.Status != store.StatusDialing {
		t.Fatalf("POST /v1/calls answered %+v", call)
	}
	return call
}

// finalCall polls GET /v1/calls/{id} (gently: the API rate-limits keys)
// until the call is over.
func finalCall(t *testing.T, inst *instance, id string) store.Call {
	t.Helper()
	var rec store.Call
	waitFor(t, "call "+id+" to end", 30*time.Second, func() bool {
		time.Sleep(150 * time.Millisecond)
		if code := getJSON(t, "http://"+inst.HTTP.String()+"/v1/calls/"+id, &rec); code != 200 {
			t.Fatalf("GET /v1/calls/%s: %d", id, code)
		}
		return rec.Status == store.StatusHangup
	})
	return rec
}

// watchEvents subscribes to the live events with query.
func watchEvents(t *testing.T, inst *instance, query string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+inst.HTTP.String()+"/v1/events?api_key="+testAPIKey+"&"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// eventTypes reads ws until call id's call.hangup and returns the types of
// id's events in order; other calls' events are counted apart.
func eventTypes(t *testing.T, ws *websocket.Conn, id string) (types []string, others int) {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(40 * time.Second))
	for {
		var ev struct {
			Type   string `json:"type"`
			CallID string `json:"call_id"`
		}
		if err := ws.ReadJSON(&ev); err != nil {
			t.Fatalf("events after %v: %v", types, err)
		}
		if ev.CallID != id {
			others++
			continue
		}
		types = append(types, ev.Type)
		if ev.Type == flow.EventCallHangup {
			return types, others
		}
	}
}

// The whole outbound path: POST /v1/calls to a registered phone's
// extension; the phone rings, answers and hears the inline flow's two
// tones in order; the events of the call arrive in order on the websocket;
// the record says outgoing, who hung up and why, keeps the metadata, and
// the requested recording holds what the phone heard.
func TestOriginateInlineFlowToExtension(t *testing.T) {
	inst := originateServer(t, nil)
	phone := registeredPhone(t, inst, "1002", siptest.AnswerPlan{RingFor: 500 * time.Millisecond})
	all := watchEvents(t, inst, "types=call.*")
	waitFor(t, "the websocket subscription", 10*time.Second, func() bool {
		return metricValue(t, inst.api.Metrics().EventSubscribers) == 1
	})

	call := postCall(t, inst, `{"to":"1002","from":"+34910000100","caller_name":"Acme","record":true,
	  "metadata":{"crm_id":"42"},"variables":{"greeting_hz":"1000"},
	  "actions":[{"type":"beep","option":{"frequency_hz":1000,"duration_ms":800}},
	             {"type":"beep","option":{"frequency_hz":500,"duration_ms":800}},
	             {"type":"hangup"}]}`)
	// A second watcher, on this call only, from the moment its id is known.
	mine := watchEvents(t, inst, "call_id="+call.ID)

	answered := answeredCall(t, phone)
	inv := phone.Invites()[len(phone.Invites())-1]
	if from := inv.From(); from == nil || from.Address.User != "+34910000100" || from.DisplayName != "Acme" {
		t.Fatalf("INVITE From: %v", inv.From())
	}
	waitDone(t, answered)
	if !answered.RemoteHungUp() {
		t.Fatal("the server did not hang up after the flow's hangup")
	}
	if got := toneSequence(answered.Heard(), 1000, 500); fmt.Sprint(got) != "[1000 500]" {
		t.Fatalf("the callee heard tones %v, want [1000 500]", got)
	}

	types, _ := eventTypes(t, all, call.ID)
	want := []string{flow.EventCallCreated, flow.EventCallRinging, flow.EventCallAnswered, flow.EventCallHangup}
	if strings.Join(types, " ") != strings.Join(want, " ") {
		t.Fatalf("events of the call: %v, want %v", types, want)
	}
	types, others := eventTypes(t, mine, call.ID)
	if others != 0 || types[len(types)-1] != flow.EventCallHangup {
		t.Fatalf("filtered watcher saw %v and %d events of other calls", types, others)
	}

	rec := finalCall(t, inst, call.ID)
	if rec.Direction != store.DirectionOutgoing || rec.HangupBy != store.HangupByLocal || rec.HangupReason != store.ReasonNormal ||
		rec.SIPCallID != answered.CallID() || rec.Destination != "1002" || rec.TMRinging == nil || rec.TMProgressing == nil {
		t.Fatalf("record: %+v", rec)
	}
	if rec.Variables["metadata.crm_id"] != "42" || rec.Variables["greeting_hz"] != "1000" || rec.Variables["call.direction"] != "outgoing" {
		t.Fatalf("variables: %v", rec.Variables)
	}
	if rec.RTPPacketsOut == 0 || rec.RTPPacketsIn == 0 {
		t.Fatalf("no media counted: %+v", rec)
	}
	// One call, one record: GET /v1/calls lists it once, the INVITE has
	// no record of its own.
	var list struct {
		Result []store.Call `json:"result"`
	}
	if code := getJSON(t, "http://"+inst.HTTP.String()+"/v1/calls", &list); code != 200 {
		t.Fatalf("GET /v1/calls: %d", code)
	}
	if len(list.Result) != 1 || list.Result[0].ID != call.ID {
		t.Fatalf("GET /v1/calls listed %d calls, want only %s: %+v", len(list.Result), call.ID, list.Result)
	}

	// The recording, downloaded as an operator would: 409 while it is
	// being finished, then the WAV (polled gently: 20 requests/s per key).
	var status int
	var wav []byte
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		status, wav = apiDo(t, inst, "GET", "/v1/calls/"+call.ID+"/recording", nil)
		if status != http.StatusConflict || time.Now().After(deadline) {
			break
		}
	}
	if status != http.StatusOK {
		t.Fatalf("GET /v1/calls/%s/recording: %d %.200s", call.ID, status, wav)
	}
	file := filepath.Join(t.TempDir(), "call.wav")
	if err := os.WriteFile(file, wav, 0o600); err != nil {
		t.Fatal(err)
	}
	_, sent := readStereo(t, file)
	if got := toneSequence(sent, 1000, 500); fmt.Sprint(got) != "[1000 500]" {
		t.Fatalf("the recording's far side has tones %v, want [1000 500]", got)
	}
}

// A callee that answers 486 leaves the call busy with its SIP code, the
// busy signal reaching the record as the callee's doing; the CLI starts it.
func TestOriginateBusyCallee(t *testing.T) {
	inst := originateServer(t, nil)
	registeredPhone(t, inst, "1003", siptest.AnswerPlan{Reject: 486})
	sf, err := (&flow.Flow{ID: "hello", Actions: []flow.Action{{Type: "hangup"}}}).ToStore("")
	if err != nil {
		t.Fatal(err)
	}
	if err := inst.db.PutFlow(context.Background(), sf); err != nil {
		t.Fatal(err)
	}
	cl := newCLI(t)
	cl.env[envAPIURL], cl.env[envAPIKey] = "http://"+inst.HTTP.String(), testAPIKey
	out := cl.must("", runCalls, "dial", "--to", "1003", "--flow", "hello", "--json")
	var call store.Call
	if err := json.Unmarshal([]byte(out), &call); err != nil || call.ID == "" {
		t.Fatalf("calls dial printed %q: %v", out, err)
	}
	rec := finalCall(t, inst, call.ID)
	if rec.HangupReason != store.ReasonBusy || rec.SIPCode != 486 || rec.HangupBy != store.HangupByRemote || rec.TMProgressing != nil {
		t.Fatalf("busy callee: %+v", rec)
	}
	// The CLI refuses what it cannot send.
	if _, err := cl.run("", runCalls, "dial", "--to", "1003", "--flow", "hello", "--agent", "x"); err == nil {
		t.Fatal("calls dial accepted both --flow and --agent")
	}
	// An extension without a registered phone: no answer, and nothing rang.
	rec = finalCall(t, inst, postCall(t, inst, `{"to":"1002","flow_id":"hello"}`).ID)
	if rec.HangupReason != store.ReasonNoAnswer || rec.SIPCode != 480 {
		t.Fatalf("unregistered callee: %+v", rec)
	}
}

// A call to a phone's SIP URI with max_duration_s ends on time even
// though its flow would echo for a minute.
func TestOriginateMaxDurationToURI(t *testing.T) {
	inst := originateServer(t, nil)
	phone := testPhone(t)
	phone.AutoAnswer(700)
	call := postCall(t, inst, fmt.Sprintf(`{"to":"sip:bob@%s","max_duration_s":1,
	  "actions":[{"type":"echo","option":{"duration_ms":60000}}]}`, phone.Addr()))
	answered := answeredCall(t, phone)
	// The echo: the phone hears its own tone back.
	hears(t, "the callee", answered, 700)
	waitDone(t, answered)
	rec := finalCall(t, inst, call.ID)
	if rec.HangupBy != store.HangupByLocal || rec.HangupReason != store.ReasonTimeout || rec.Destination != "sip:bob@"+phone.Addr().String() {
		t.Fatalf("record: %+v", rec)
	}
	if d := rec.TMHangup.Sub(*rec.TMProgressing); d < time.Second || d > 20*time.Second {
		t.Fatalf("the call lasted %v after the answer, want about 1 s", d)
	}
}

// An agent call: the callee hears the agent's greeting, the LLM gets the
// request's variables and context in its prompt, and the transcript is on
// the call.
func TestOriginateAgentCall(t *testing.T) {
	dg := fake.NewDeepgram(t, fake.DeepgramOptions{APIKey: "dg-key", Utterances: []string{"Yes, Friday works."}})
	oai := fake.NewOpenAI(t, fake.OpenAIScript{APIKey: "oai-key", Chat: []fake.ChatReply{{Text: "Great, see you then."}}})
	el := fake.NewElevenLabs(t, fake.ElevenLabsOptions{APIKey: "el-key", ToneHz: 600, PerChar: 15 * time.Millisecond})
	agents := flow.NewAgents()
	if err := agents.Put(agent.Definition{
		ID:              "reminder",
		Name:            "Reminder",
		SystemPrompt:    "You call {{customer}}. {{context}}",
		StartingMessage: "Hello, this is your reminder.",
		STT:             &agent.ProviderConfig{Provider: "deepgram", BaseURL: dg.URL(), APIKey: "dg-key"},
		LLM:             &agent.ProviderConfig{Provider: "openai", BaseURL: oai.URL, APIKey: "oai-key", Model: "gpt-4o-mini"},
		TTS:             &agent.ProviderConfig{Provider: "elevenlabs", BaseURL: el.URL(), APIKey: "el-key"},
	}); err != nil {
		t.Fatal(err)
	}
	inst := originateServer(t, agents)
	phone := registeredPhone(t, inst, "1002", siptest.AnswerPlan{})
	call := postCall(t, inst, `{"to":"1002","agent_id":"reminder","variables":{"customer":"Ada"},
	  "context":"Confirm the table on Friday."}`)
	answered := answeredCall(t, phone)
	waitFor(t, "the greeting", 15*time.Second, func() bool { return len(toneSequence(answered.Heard(), 600)) > 0 })
	waitFor(t, "the greeting to end", 15*time.Second, func() bool {
		h := answered.Heard()
		return len(h) > media.SampleRate && media.ToneLevel(h[len(h)-media.SampleRate/2:], 600) < 0.05
	})
	speech, err := media.ReadWAVFile("../../media/vad/testdata/s1.wav")
	if err != nil {
		t.Fatal(err)
	}
	<-answered.Play(speech)
	waitFor(t, "the LLM request", 20*time.Second, func() bool { return len(oai.ChatRequests()) > 0 })
	req := oai.ChatRequests()[0]
	if len(req.Messages) == 0 || !strings.Contains(req.Messages[0].Content, "You call Ada. Confirm the table on Friday.") {
		t.Fatalf("system prompt: %+v", req.Messages)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := answered.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	rec := finalCall(t, inst, call.ID)
	if rec.HangupBy != store.HangupByRemote || rec.FlowID != "agent:reminder" {
		t.Fatalf("record: %+v", rec)
	}
	var transcript struct {
		Turns []store.TranscriptTurn `json:"turns"`
	}
	waitFor(t, "the transcript", 10*time.Second, func() bool {
		time.Sleep(150 * time.Millisecond)
		getJSON(t, "http://"+inst.HTTP.String()+"/v1/calls/"+call.ID+"/transcript", &transcript)
		return len(transcript.Turns) > 0
	})
	if transcript.Turns[0].Role != "assistant" || transcript.Turns[0].Text != "Hello, this is your reminder." {
		t.Fatalf("transcript: %+v", transcript.Turns)
	}
}

// The callee of an outbound call moves its media to a new port by
// re-INVITE: the echo flow's audio follows it there, and its old port
// hears nothing more.
func TestOriginatedCallFollowsReinvite(t *testing.T) {
	inst := originateServer(t, nil)
	phone := registeredPhone(t, inst, "1002", siptest.AnswerPlan{})
	postCall(t, inst, `{"to":"1002","actions":[{"type":"echo","option":{"duration_ms":60000}}]}`)
	answered := answeredCall(t, phone)
	answered.Play(media.Tone(1000, 30*time.Second, 0.5))
	hears(t, "the callee", answered, 1000)

	mark := answered.HeardLen()
	moved := moveMedia(t, phone, answered)
	moved.Enqueue(media.Tone(700, 20*time.Second, 0.5))
	heardOnTone(t, moved, "the echo at the callee's new port", 700)
	oldPortSilent(t, answered, mark)
}

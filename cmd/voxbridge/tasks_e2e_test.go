package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/voxbridge/voxbridge/sip/siptest"
	"github.com/voxbridge/voxbridge/store"
)

// postTask creates a task over the API.
func postTask(t *testing.T, inst *instance, body string) store.Task {
	t.Helper()
	var task store.Task
	if err := testAPIClient(inst).do("POST", "/v1/tasks", json.RawMessage(body), &task); err != nil {
		t.Fatalf("POST /v1/tasks: %v", err)
	}
	if task.ID == "" || task.Status != store.TaskPending {
		t.Fatalf("POST /v1/tasks answered %+v", task)
	}
	return task
}

// finalTask polls GET /v1/tasks/{id} (gently: keys are rate-limited) until
// the task is completed, failed or cancelled.
func finalTask(t *testing.T, inst *instance, id string) store.Task {
	t.Helper()
	var task store.Task
	waitFor(t, "task "+id+" to finish", 40*time.Second, func() bool {
		time.Sleep(150 * time.Millisecond)
		if code := getJSON(t, "http://"+inst.HTTP.String()+"/v1/tasks/"+id, &task); code != 200 {
			t.Fatalf("GET /v1/tasks/%s: %d", id, code)
		}
		return task.Status.Final()
	})
	return task
}

// A task to a registered phone that is busy the first time and answers the
// second: two calls retry_interval_s apart, the task completed with both
// call ids, the phone heard the flow's tone, and the task's events arrive
// on the websocket in order.
func TestTaskRetriesBusyThenAnswered(t *testing.T) {
	inst := originateServer(t, nil)
	var invites atomic.Int32
	phone := testPhone(t)
	phone.OnInvite(func(*sip.Request) siptest.AnswerPlan {
		if invites.Add(1) == 1 {
			return siptest.AnswerPlan{Reject: 486}
		}
		return siptest.AnswerPlan{}
	})
	if err := phone.Register(bctx(t), inst.SIPUDP.String(), "1002", extPass); err != nil {
		t.Fatal(err)
	}
	events := watchEvents(t, inst, "types=task.*")
	waitFor(t, "the websocket subscription", 10*time.Second, func() bool {
		return metricValue(t, inst.api.Metrics().EventSubscribers) == 1
	})

	task := postTask(t, inst, `{"to":"1002","max_attempts":3,"retry_interval_s":1,
	  "actions":[{"type":"beep","option":{"frequency_hz":1000,"duration_ms":800}},{"type":"hangup"}]}`)
	answered := answeredCall(t, phone)
	waitDone(t, answered)
	if got := toneSequence(answered.Heard(), 1000, 500); fmt.Sprint(got) != "[1000]" {
		t.Fatalf("the callee heard tones %v, want [1000]", got)
	}

	done := finalTask(t, inst, task.ID)
	if done.Status != store.TaskCompleted || done.Attempts != 2 || len(done.CallIDs) != 2 || done.TMEnd == nil {
		t.Fatalf("task: %+v", done)
	}
	if n := invites.Load(); n != 2 {
		t.Fatalf("the phone got %d INVITEs, want 2", n)
	}
	busy := finalCall(t, inst, done.CallIDs[0])
	if busy.HangupReason != store.ReasonBusy || busy.SIPCode != 486 || busy.TMProgressing != nil {
		t.Fatalf("first call: reason %s code %d answered %v", busy.HangupReason, busy.SIPCode, busy.TMProgressing)
	}
	second := finalCall(t, inst, done.CallIDs[1])
	if second.TMProgressing == nil || second.TMCreate.Sub(*busy.TMHangup) < 900*time.Millisecond {
		t.Fatalf("second call: answered %v, created %v after the busy one ended (want ≥ 1 s)", second.TMProgressing,
			second.TMCreate.Sub(*busy.TMHangup))
	}

	var types []string
	var startedCalls []string
	events.SetReadDeadline(time.Now().Add(20 * time.Second))
	for len(types) < 4 {
		var ev struct {
			Type   string     `json:"type"`
			CallID string     `json:"call_id"`
			Data   store.Task `json:"data"`
		}
		if err := events.ReadJSON(&ev); err != nil {
			t.Fatalf("task events after %v: %v", types, err)
		}
		if ev.Data.ID != task.ID {
			continue
		}
		types = append(types, ev.Type)
		if ev.Type == "task.started" {
			startedCalls = append(startedCalls, ev.CallID)
		}
	}
	if fmt.Sprint(types) != "[task.created task.started task.started task.completed]" ||
		fmt.Sprint(startedCalls) != fmt.Sprint(done.CallIDs) {
		t.Fatalf("events %v with calls %v, want created, started ×2 (calls %v), completed", types, startedCalls, done.CallIDs)
	}
}

// Tasks live in the database: one made on a server that stops before it
// is due runs on the next server started on the same file.
func TestTaskSurvivesRestart(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "tasks.db")
	onFile := func(c *serveConfig) { c.DB = dbPath }
	phone := testPhone(t)
	phone.AutoAnswer(0)

	first, _ := testServerWith(t, instanceOptions{}, onFile)
	at := time.Now().Add(4 * time.Second).UTC().Format(time.RFC3339Nano)
	task := postTask(t, first, fmt.Sprintf(`{"to":"sip:bob@%s","scheduled_at":%q,
	  "actions":[{"type":"beep","option":{"frequency_hz":500,"duration_ms":600}},{"type":"hangup"}]}`, phone.Addr(), at))
	stopping := time.Now()
	first.Stop()
	t.Logf("the first server stopped in %v", time.Since(stopping))

	db, err := store.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := db.GetTask(context.Background(), task.ID)
	db.Close()
	if err != nil || stored.Status != store.TaskPending || stored.Attempts != 0 {
		t.Fatalf("after the first server stopped: %+v %v (it must not have run yet)", stored, err)
	}
	if n := len(phone.Invites()); n != 0 {
		t.Fatalf("the phone was called %d times before the restart", n)
	}

	second, _ := testServerWith(t, instanceOptions{}, onFile)
	answered := answeredCall(t, phone)
	waitDone(t, answered)
	if got := toneSequence(answered.Heard(), 1000, 500); fmt.Sprint(got) != "[500]" {
		t.Fatalf("the callee heard tones %v, want [500]", got)
	}
	done := finalTask(t, second, task.ID)
	if done.Status != store.TaskCompleted || done.Attempts != 1 || len(done.CallIDs) != 1 {
		t.Fatalf("task after the restart: %+v", done)
	}
	if call := finalCall(t, second, done.CallIDs[0]); call.TMCreate.Before(stored.ScheduledAt) {
		t.Fatalf("the call started at %v, before scheduled_at %v", call.TMCreate, stored.ScheduledAt)
	}
}

// voxbridge tasks create|list|get|cancel|delete against a running server.
func TestTasksCommands(t *testing.T) {
	inst, _ := testServer(t, nil)
	c := newCLI(t)
	c.env[envAPIURL] = "http://" + inst.HTTP.String()
	c.env[envAPIKey] = testAPIKey
	sf, err := mustFlow(t, `{"id":"remind","actions":[{"type":"hangup"}]}`).ToStore("")
	if err != nil {
		t.Fatal(err)
	}
	if err := inst.db.PutFlow(context.Background(), sf); err != nil {
		t.Fatal(err)
	}
	out := c.must("", runTasks, "create", "--to", "sip:bob@127.0.0.1:5999", "--flow", "remind",
		"--at", "2099-01-01T09:00:00Z", "--attempts", "4", "--retry-interval", "90", "--retry-on", "busy,noanswer", "--var", "name=Ada", "--json")
	var task store.Task
	if err := json.Unmarshal([]byte(out), &task); err != nil {
		t.Fatalf("create --json: %s %v", out, err)
	}
	if task.MaxAttempts != 4 || task.RetryIntervalS != 90 || fmt.Sprint(task.RetryOn) != "[busy noanswer]" ||
		task.Variables["name"] != "Ada" || task.ScheduledAt.Year() != 2099 {
		t.Fatalf("created %+v", task)
	}
	if _, err := c.run("", runTasks, "create", "--to", "1002", "--flow", "nope"); err == nil || !contains(err.Error(), "404", "flow_id") {
		t.Fatalf("unknown flow: %v", err)
	}
	if out := c.must("", runTasks, "list", "--status", "pending"); !contains(out, task.ID, "pending", "flow:remind", "0/4") {
		t.Fatalf("list:\n%s", out)
	}
	if out := c.must("", runTasks, "cancel", task.ID); !contains(out, "cancelled") {
		t.Fatalf("cancel: %s", out)
	}
	if _, err := c.run("", runTasks, "cancel", task.ID); err == nil || !contains(err.Error(), "409") {
		t.Fatalf("cancel twice: %v", err)
	}
	if out := c.must("", runTasks, "list", "--status", "pending"); contains(out, task.ID) {
		t.Fatalf("a cancelled task listed as pending:\n%s", out)
	}
	c.must("", runTasks, "delete", task.ID)
	if _, err := c.run("", runTasks, "get", task.ID); err == nil || !contains(err.Error(), "404") {
		t.Fatalf("get a deleted task: %v", err)
	}
}

func contains(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

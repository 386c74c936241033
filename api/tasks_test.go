package api

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/store"
)

// taskEnv is originateEnv with a real scheduler that is never started:
// requests are checked and stored for real, and no call is placed.
func taskEnv(t *testing.T) *testEnv {
	t.Helper()
	e := originateEnv(t)
	sched, err := flow.NewScheduler(flow.SchedulerConfig{Store: e.db, Calls: e.api.cfg.Originator.(*flow.Controller),
		Bus: e.bus, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.api.cfg.Tasks = sched
	return e
}

func TestCreateTask(t *testing.T) {
	e := taskEnv(t)
	sub := e.bus.Subscribe(16, func(ev flow.Event) bool { return ev.Type == flow.EventTaskCreated })
	defer sub.Close()
	r := e.do("POST", "/v1/tasks", e.key, `{"to":"1001","flow_id":"hello","variables":{"name":"Ada"},
	  "metadata":{"crm_id":"42"},"scheduled_at":"2026-03-02T10:00:00+01:00","max_attempts":3,"retry_interval_s":60,
	  "retry_on":["busy"]}`)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var task store.Task
	r.decode(t, &task)
	if r.header.Get("Location") != "/v1/tasks/"+task.ID || task.Status != store.TaskPending || task.To != "1001" ||
		task.FlowID != "hello" || task.Variables["name"] != "Ada" || task.Metadata["crm_id"] != "42" ||
		!task.ScheduledAt.Equal(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)) || task.NextAttemptAt == nil ||
		task.MaxAttempts != 3 || task.RetryIntervalS != 60 || fmt.Sprint(task.RetryOn) != "[busy]" || task.Attempts != 0 {
		t.Fatalf("created: %s", r.body)
	}
	select {
	case ev := <-sub.C:
		if ev.Data.(store.Task).ID != task.ID {
			t.Fatalf("task.created for %+v", ev.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no task.created event")
	}
	// Defaults: now, one attempt, 300 s, busy/noanswer/failed.
	r = e.do("POST", "/v1/tasks", e.key, `{"to":"sip:bob@127.0.0.1:5070","actions":[{"type":"hangup"}]}`)
	if r.status != http.StatusCreated {
		t.Fatalf("create with defaults: %d %s", r.status, r.body)
	}
	var def store.Task
	r.decode(t, &def)
	if !def.ScheduledAt.Equal(e.clock.Now()) || def.MaxAttempts != 1 || def.RetryIntervalS != 300 ||
		fmt.Sprint(def.RetryOn) != "[busy noanswer failed]" || string(def.Actions) != `[{"type":"hangup"}]` {
		t.Fatalf("defaults: %s", r.body)
	}
	var got store.Task
	e.do("GET", "/v1/tasks/"+task.ID, e.roKey, nil).decode(t, &got)
	if got.ID != task.ID || got.Variables["name"] != "Ada" {
		t.Fatalf("get: %+v", got)
	}
}

func TestCreateTaskBadBodies(t *testing.T) {
	e := taskEnv(t)
	for _, tc := range []struct {
		name, body, code, field string
		status                  int
	}{
		{"unknown field", `{"to":"1001","flow_id":"hello","colour":"red"}`, "invalid_argument", "colour", 400},
		{"attempts not a number", `{"to":"1001","flow_id":"hello","max_attempts":"3"}`, "invalid_argument", "max_attempts", 400},
		{"too many attempts", `{"to":"1001","flow_id":"hello","max_attempts":11}`, "invalid_argument", "max_attempts", 400},
		{"negative interval", `{"to":"1001","flow_id":"hello","retry_interval_s":-1}`, "invalid_argument", "retry_interval_s", 400},
		{"unknown retry reason", `{"to":"1001","flow_id":"hello","retry_on":["busy","sometimes"]}`, "invalid_argument", "retry_on[1]", 400},
		{"bad time", `{"to":"1001","flow_id":"hello","scheduled_at":"tomorrow"}`, "invalid_argument", "scheduled_at", 400},
		{"no to", `{"flow_id":"hello"}`, "invalid_argument", "to", 400},
		{"nothing to run", `{"to":"1001"}`, "invalid_argument", "flow_id", 400},
		{"bad duration", `{"to":"1001","flow_id":"hello","max_duration_s":-1}`, "invalid_argument", "max_duration_s", 400},
		{"unknown flow", `{"to":"1001","flow_id":"nope"}`, "not_found", "flow_id", 404},
		{"unknown trunk", `{"to":"+34910000001","flow_id":"hello","trunk":"nope"}`, "not_found", "trunk", 404},
		{"bad inline action", `{"to":"1001","actions":[{"type":"answer"},{"type":"dance"}]}`, "invalid_flow", "actions[1].type", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/v1/tasks", e.key, tc.body)
			details := expectError(t, tc.name, r, tc.status, tc.code)
			if details["field"] != tc.field {
				t.Fatalf("field %v, want %q: %s", details["field"], tc.field, r.body)
			}
		})
	}
	if tasks, _, err := e.db.ListTasks(context.Background(), store.ListOptions{}); err != nil || len(tasks) != 0 {
		t.Fatalf("tasks stored from refused requests: %v %v", tasks, err)
	}
}

func TestTaskActionsAndConflicts(t *testing.T) {
	e := taskEnv(t)
	ctx := context.Background()
	var later, done store.Task
	e.do("POST", "/v1/tasks", e.key, `{"to":"1001","flow_id":"hello","scheduled_at":"2030-01-01T00:00:00Z"}`).decode(t, &later)
	e.do("POST", "/v1/tasks", e.key, `{"to":"1001","flow_id":"hello"}`).decode(t, &done)
	// The second one ran and was answered (as the scheduler records it).
	stored, err := e.db.GetTask(ctx, done.ID)
	if err != nil {
		t.Fatal(err)
	}
	end := e.clock.Now()
	stored.Status, stored.Attempts, stored.CallIDs, stored.TMEnd, stored.NextAttemptAt = store.TaskCompleted, 1, []string{"c1"}, &end, nil
	if err := e.db.UpdateTask(ctx, stored, store.TaskPending); err != nil {
		t.Fatal(err)
	}

	var executed store.Task
	e.do("POST", "/v1/tasks/"+later.ID+"/execute", e.key, nil).decode(t, &executed)
	if executed.Status != store.TaskPending || executed.NextAttemptAt == nil || !executed.NextAttemptAt.Equal(e.clock.Now()) {
		t.Fatalf("execute: %+v", executed)
	}
	expectError(t, "cancel a completed task", e.do("POST", "/v1/tasks/"+done.ID+"/cancel", e.key, nil), http.StatusConflict, "conflict")
	expectError(t, "execute a completed task", e.do("POST", "/v1/tasks/"+done.ID+"/execute", e.key, nil), http.StatusConflict, "conflict")
	var cancelled store.Task
	r := e.do("POST", "/v1/tasks/"+later.ID+"/cancel", e.key, nil)
	r.decode(t, &cancelled)
	if r.status != http.StatusOK || cancelled.Status != store.TaskCancelled || cancelled.TMEnd == nil || cancelled.NextAttemptAt != nil {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	expectError(t, "cancel twice", e.do("POST", "/v1/tasks/"+later.ID+"/cancel", e.key, nil), http.StatusConflict, "conflict")

	// Delete: not while in progress; gone afterwards.
	inProgress := &store.Task{CallRequest: store.CallRequest{To: "1001", FlowID: "hello"}, MaxAttempts: 1}
	if err := e.db.CreateTask(ctx, inProgress); err != nil {
		t.Fatal(err)
	}
	inProgress.Status = store.TaskInProgress
	if err := e.db.UpdateTask(ctx, inProgress, store.TaskPending); err != nil {
		t.Fatal(err)
	}
	expectError(t, "delete in progress", e.do("DELETE", "/v1/tasks/"+inProgress.ID, e.key, nil), http.StatusConflict, "conflict")
	if r := e.do("DELETE", "/v1/tasks/"+later.ID, e.key, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	for _, req := range []struct{ method, path string }{
		{"GET", "/v1/tasks/" + later.ID}, {"DELETE", "/v1/tasks/" + later.ID},
		{"POST", "/v1/tasks/" + later.ID + "/cancel"}, {"POST", "/v1/tasks/" + later.ID + "/execute"},
	} {
		expectError(t, req.method+" "+req.path, e.do(req.method, req.path, e.key, nil), http.StatusNotFound, "not_found")
	}
}

func TestTaskAccess(t *testing.T) {
	e := taskEnv(t)
	body := `{"to":"1001","flow_id":"hello"}`
	expectError(t, "no key", e.do("POST", "/v1/tasks", "", body), http.StatusUnauthorized, "unauthenticated")
	expectError(t, "no key list", e.do("GET", "/v1/tasks", "", nil), http.StatusUnauthorized, "unauthenticated")
	expectError(t, "read-only create", e.do("POST", "/v1/tasks", e.roKey, body), http.StatusForbidden, "permission_denied")
	var task store.Task
	e.do("POST", "/v1/tasks", e.key, body).decode(t, &task)
	for _, p := range []string{"/cancel", "/execute"} {
		expectError(t, "read-only "+p, e.do("POST", "/v1/tasks/"+task.ID+p, e.roKey, nil), http.StatusForbidden, "permission_denied")
	}
	expectError(t, "read-only delete", e.do("DELETE", "/v1/tasks/"+task.ID, e.roKey, nil), http.StatusForbidden, "permission_denied")
	if r := e.do("GET", "/v1/tasks/"+task.ID, e.roKey, nil); r.status != http.StatusOK {
		t.Fatalf("read-only get: %d", r.status)
	}
	// Without a scheduler, writes are 503 and reads still work.
	bare := newTestEnv(t)
	expectError(t, "no scheduler", bare.do("POST", "/v1/tasks", bare.key, body), http.StatusServiceUnavailable, "unavailable")
	if r := bare.do("GET", "/v1/tasks", bare.key, nil); r.status != http.StatusOK {
		t.Fatalf("list without a scheduler: %d", r.status)
	}
}

func TestListTasksPagesAndFilter(t *testing.T) {
	e := taskEnv(t)
	var ids []string
	for i := range 5 {
		var task store.Task
		e.do("POST", "/v1/tasks", e.key, fmt.Sprintf(`{"to":"100%d","flow_id":"hello","scheduled_at":"2030-01-01T00:00:00Z"}`, i)).decode(t, &task)
		ids = append(ids, task.ID)
		time.Sleep(2 * time.Millisecond) // distinct creation times (milliseconds)
	}
	e.do("POST", "/v1/tasks/"+ids[1]+"/cancel", e.key, nil)
	var seen []string
	tok := ""
	for pages := 1; ; pages++ {
		var page struct {
			Result        []store.Task `json:"result"`
			NextPageToken string       `json:"next_page_token"`
		}
		path := "/v1/tasks?page_size=2"
		if tok != "" {
			path += "&page_token=" + tok
		}
		e.do("GET", path, e.roKey, nil).decode(t, &page)
		for _, task := range page.Result {
			seen = append(seen, task.ID)
		}
		if page.NextPageToken == "" {
			if pages != 3 || len(seen) != 5 || seen[0] != ids[4] || seen[4] != ids[0] {
				t.Fatalf("%d pages, %v; want 3 pages newest first of %v", pages, seen, ids)
			}
			break
		}
		tok = page.NextPageToken
	}
	var cancelled struct {
		Result []store.Task `json:"result"`
	}
	e.do("GET", "/v1/tasks?status=cancelled,completed", e.key, nil).decode(t, &cancelled)
	if len(cancelled.Result) != 1 || cancelled.Result[0].ID != ids[1] {
		t.Fatalf("status filter: %+v", cancelled.Result)
	}
	expectError(t, "bad status", e.do("GET", "/v1/tasks?status=done", e.key, nil), 400, "invalid_argument")
	expectError(t, "bad token", e.do("GET", "/v1/tasks?page_token=xyz", e.key, nil), 400, "invalid_argument")
	expectError(t, "unknown parameter", e.do("GET", "/v1/tasks?state=pending", e.key, nil), 400, "invalid_argument")
}

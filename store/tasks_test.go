package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func newTask(to string, at time.Time) *Task {
	return &Task{
		CallRequest: CallRequest{To: to, FlowID: "welcome", Variables: map[string]string{"name": "Ana"},
			Actions: json.RawMessage(`[{"type":"hangup"}]`), Metadata: map[string]string{"crm": "7"}},
		ScheduledAt: at, MaxAttempts: 3, RetryIntervalS: 60,
		RetryOn: []HangupReason{ReasonBusy, ReasonNoAnswer},
	}
}

func TestTaskCreateGetUpdate(t *testing.T) {
	db, path := openTestDB(t)
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	db.now = clk.now
	at := clk.t.Add(90*time.Minute + 1234567*time.Nanosecond)
	task := newTask("+34910000001", at)
	if err := db.CreateTask(ctx, task); err != nil {
		t.Fatal(err)
	}
	if task.ID == "" || task.Status != TaskPending || task.NextAttemptAt == nil || !task.NextAttemptAt.Equal(task.ScheduledAt) {
		t.Fatalf("created %+v", task)
	}
	if task.ScheduledAt.Nanosecond()%int(time.Millisecond) != 0 {
		t.Fatalf("scheduled_at %v not normalised to milliseconds", task.ScheduledAt)
	}
	got, err := db.GetTask(ctx, task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.To != "+34910000001" || got.FlowID != "welcome" || got.Variables["name"] != "Ana" || got.Metadata["crm"] != "7" ||
		string(got.Actions) != `[{"type":"hangup"}]` || !got.ScheduledAt.Equal(task.ScheduledAt) ||
		fmt.Sprint(got.RetryOn) != "[busy noanswer]" || got.MaxAttempts != 3 || got.RetryIntervalS != 60 ||
		len(got.CallIDs) != 0 || got.CallIDs == nil || got.TMEnd != nil {
		t.Fatalf("read back %+v", got)
	}

	// Claim it: pending → in_progress with the first call.
	got.Status, got.Attempts, got.NextAttemptAt = TaskInProgress, 1, nil
	got.CallIDs, got.CurrentCallID = append(got.CallIDs, "call-1"), "call-1"
	if err := db.UpdateTask(ctx, got, TaskPending); err != nil {
		t.Fatal(err)
	}
	// A second claim from the same (stale) state loses.
	stale := *got
	if err := db.UpdateTask(ctx, &stale, TaskPending); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale claim: %v, want ErrConflict", err)
	}
	if err := db.UpdateTask(ctx, &Task{ID: "nope", Status: TaskFailed, MaxAttempts: 1, CallRequest: CallRequest{To: "1"}}, TaskPending); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing task: %v, want ErrNotFound", err)
	}
	if err := db.DeleteTask(ctx, got.ID); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete in progress: %v, want ErrConflict", err)
	}
	end := clk.t.Add(2 * time.Hour)
	got.Status, got.TMEnd, got.CurrentCallID = TaskCompleted, &end, ""
	got.LastHangupReason, got.LastSIPCode = ReasonNormal, 200
	if err := db.UpdateTask(ctx, got, TaskInProgress); err != nil {
		t.Fatal(err)
	}
	// Another handle on the file (what a restarted server opens) reads it.
	db2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	re, err := db2.GetTask(ctx, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	if re.Status != TaskCompleted || re.Attempts != 1 || fmt.Sprint(re.CallIDs) != "[call-1]" || re.LastHangupReason != ReasonNormal ||
		re.LastSIPCode != 200 || re.TMEnd == nil || !re.TMEnd.Equal(end) || re.NextAttemptAt != nil {
		t.Fatalf("after reopen %+v", re)
	}
	if err := db2.DeleteTask(ctx, re.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db2.GetTask(ctx, re.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted task: %v", err)
	}
	if err := db2.DeleteTask(ctx, re.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestTaskRefusesBadValues(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	for name, f := range map[string]func(*Task){
		"no destination":   func(t *Task) { t.To = " " },
		"zero attempts":    func(t *Task) { t.MaxAttempts = 0 },
		"negative retry":   func(t *Task) { t.RetryIntervalS = -1 },
		"unknown retry_on": func(t *Task) { t.RetryOn = []HangupReason{"sometimes"} },
	} {
		task := newTask("1002", time.Now())
		f(task)
		if err := db.CreateTask(ctx, task); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestTaskDueAndLists(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	db.now = clk.now
	if _, ok, err := db.NextTaskAttempt(ctx); err != nil || ok {
		t.Fatalf("no tasks: next ok=%v err=%v", ok, err)
	}
	var ids []string
	for i, offset := range []time.Duration{30 * time.Minute, -time.Minute, 10 * time.Minute, -5 * time.Minute, time.Hour} {
		clk.t = clk.t.Add(time.Second) // distinct creation times
		task := newTask(fmt.Sprintf("100%d", i), time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC).Add(offset))
		if err := db.CreateTask(ctx, task); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, task.ID)
	}
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	due, err := db.DueTasks(ctx, now, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 2 || due[0].ID != ids[3] || due[1].ID != ids[1] {
		t.Fatalf("due: %d tasks %v, want the two overdue, most overdue first", len(due), taskIDs(due))
	}
	next, ok, err := db.NextTaskAttempt(ctx)
	if err != nil || !ok || !next.Equal(now.Add(-5*time.Minute)) {
		t.Fatalf("next %v %v %v", next, ok, err)
	}
	// Cancel one: it is neither due nor pending any more.
	c, _ := db.GetTask(ctx, ids[3])
	c.Status, c.NextAttemptAt = TaskCancelled, nil
	if err := db.UpdateTask(ctx, c, TaskPending); err != nil {
		t.Fatal(err)
	}
	if due, _ := db.DueTasks(ctx, now, 10); len(due) != 1 || due[0].ID != ids[1] {
		t.Fatalf("due after cancel: %v", taskIDs(due))
	}
	if got, _ := db.TasksInStatus(ctx, TaskCancelled); len(got) != 1 || got[0].ID != ids[3] {
		t.Fatalf("cancelled: %v", taskIDs(got))
	}

	// Pages of two, newest first, and a status filter.
	var all []string
	tok := ""
	for pages := 0; ; pages++ {
		page, next, err := db.ListTasks(ctx, ListOptions{PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, taskIDs(page)...)
		if next == "" {
			if pages != 2 {
				t.Fatalf("%d pages, want 3", pages+1)
			}
			break
		}
		tok = next
	}
	want := slices.Clone(ids)
	slices.Reverse(want)
	if fmt.Sprint(all) != fmt.Sprint(want) {
		t.Fatalf("listed %v, want %v", all, want)
	}
	pending, _, err := db.ListTasks(ctx, ListOptions{}, TaskPending)
	if err != nil || len(pending) != 4 {
		t.Fatalf("pending: %d, %v", len(pending), err)
	}
	if _, _, err := db.ListTasks(ctx, ListOptions{}, "done"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad status filter: %v", err)
	}
	if _, _, err := db.ListTasks(ctx, ListOptions{PageToken: "garbage"}); !errors.Is(err, ErrBadPageToken) {
		t.Fatalf("bad token: %v", err)
	}
}

func taskIDs(ts []Task) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.ID
	}
	return out
}

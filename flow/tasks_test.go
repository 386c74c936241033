package flow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/voxbridge/voxbridge/store"
)

// fakeTaskCalls places "calls" as records in the store, the way the
// controller does (status dialing); the test ends them with end.
type fakeTaskCalls struct {
	db  *store.DB
	bus *Bus

	mu       sync.Mutex
	placed   []OriginateRequest
	ids      []string
	hungUp   []string
	checkErr error
	origErr  error
}

func (f *fakeTaskCalls) CheckOriginate(_ context.Context, req OriginateRequest) error {
	if req.To == "" {
		return badRequest("to", "required")
	}
	return f.checkErr
}

func (f *fakeTaskCalls) Originate(ctx context.Context, req OriginateRequest) (store.Call, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.origErr != nil {
		return store.Call{}, f.origErr
	}
	rec := store.Call{Direction: store.DirectionOutgoing, Destination: req.To, Status: store.StatusDialing}
	if err := f.db.CreateCall(ctx, &rec); err != nil {
		return store.Call{}, err
	}
	f.placed = append(f.placed, req)
	f.ids = append(f.ids, rec.ID)
	return rec, nil
}

func (f *fakeTaskCalls) CallAction(_ context.Context, id string, a CallAction) (CallControlState, error) {
	f.mu.Lock()
	f.hungUp = append(f.hungUp, id)
	f.mu.Unlock()
	return CallControlState{}, nil
}

func (f *fakeTaskCalls) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ids...)
}

// end finishes call id as the controller would: record, then event.
func (f *fakeTaskCalls) end(t *testing.T, id string, answered bool, reason store.HangupReason, code int) {
	t.Helper()
	ctx := context.Background()
	rec, err := f.db.GetCall(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if answered {
		rec.TMProgressing = &now
	}
	rec.Status, rec.TMHangup, rec.HangupReason, rec.SIPCode = store.StatusHangup, &now, reason, code
	rec.HangupBy = store.HangupByRemote
	if err := f.db.UpdateCall(ctx, rec); err != nil {
		t.Fatal(err)
	}
	f.bus.Publish(EventCallHangup, id, *rec)
}

// taskClock is the scheduler's clock, moved by the test.
type taskClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *taskClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *taskClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type taskRig struct {
	db    *store.DB
	bus   *Bus
	calls *fakeTaskCalls
	clk   *taskClock
	s     *Scheduler
	trunk map[string]int // live SIP calls by trunk id
	mu    sync.Mutex
}

func newTaskRig(t *testing.T, path string) *taskRig {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "tasks.db")
	}
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := &taskRig{db: db, bus: NewBus(), clk: &taskClock{t: time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)}, trunk: map[string]int{}}
	r.calls = &fakeTaskCalls{db: db, bus: r.bus}
	r.s, err = NewScheduler(SchedulerConfig{Store: db, Calls: r.calls, Bus: r.bus, Now: r.clk.now,
		TrunkWait: 10 * time.Second, Logger: slog.New(slog.DiscardHandler),
		TrunkCalls: func(id string) int {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.trunk[id]
		}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *taskRig) task(t *testing.T, id string) *store.Task {
	t.Helper()
	task, err := r.db.GetTask(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func (r *taskRig) create(t *testing.T, task *store.Task) *store.Task {
	t.Helper()
	if err := r.s.Create(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	return task
}

// events collects the task events published from now on.
func (r *taskRig) events(t *testing.T) func() []string {
	sub := r.bus.Subscribe(64, func(ev Event) bool { return len(ev.Type) > 5 && ev.Type[:5] == "task." })
	t.Cleanup(sub.Close)
	var got []string
	return func() []string {
		for {
			select {
			case ev := <-sub.C:
				got = append(got, ev.Type)
			default:
				return got
			}
		}
	}
}

// A busy callee is called again retry_interval_s later, not before; the
// answered second attempt completes the task with both call ids.
func TestTaskRetriesAfterBusyThenCompletes(t *testing.T) {
	r := newTaskRig(t, "")
	ctx := context.Background()
	events := r.events(t)
	start := r.clk.now()
	task := r.create(t, &store.Task{CallRequest: store.CallRequest{To: "1002", FlowID: "welcome"},
		ScheduledAt: start.Add(time.Minute), MaxAttempts: 3, RetryIntervalS: 120})
	if task.Status != store.TaskPending || task.MaxAttempts != 3 || fmt.Sprint(task.RetryOn) != "[busy noanswer failed]" {
		t.Fatalf("created %+v", task)
	}

	r.s.step(ctx)
	if n := len(r.calls.calls()); n != 0 {
		t.Fatalf("%d calls before scheduled_at", n)
	}
	r.clk.add(time.Minute)
	r.s.step(ctx)
	ids := r.calls.calls()
	if len(ids) != 1 {
		t.Fatalf("%d calls at scheduled_at, want 1", len(ids))
	}
	got := r.task(t, task.ID)
	if got.Status != store.TaskInProgress || got.Attempts != 1 || got.CurrentCallID != ids[0] || got.NextAttemptAt != nil {
		t.Fatalf("during attempt 1: %+v", got)
	}

	r.calls.end(t, ids[0], false, store.ReasonBusy, 486)
	r.s.step(ctx)
	got = r.task(t, task.ID)
	wantNext := start.Add(time.Minute + 120*time.Second)
	if got.Status != store.TaskPending || got.NextAttemptAt == nil || !got.NextAttemptAt.Equal(wantNext) ||
		got.LastHangupReason != store.ReasonBusy || got.LastSIPCode != 486 {
		t.Fatalf("after busy: %+v (next %v, want %v)", got, got.NextAttemptAt, wantNext)
	}
	r.clk.add(119 * time.Second)
	r.s.step(ctx)
	if n := len(r.calls.calls()); n != 1 {
		t.Fatalf("%d calls a second before the retry, want 1", n)
	}
	r.clk.add(time.Second)
	r.s.step(ctx)
	ids = r.calls.calls()
	if len(ids) != 2 {
		t.Fatalf("%d calls at the retry time, want 2", len(ids))
	}
	r.calls.end(t, ids[1], true, store.ReasonNormal, 0)
	r.s.step(ctx)
	got = r.task(t, task.ID)
	if got.Status != store.TaskCompleted || got.Attempts != 2 || fmt.Sprint(got.CallIDs) != fmt.Sprint(ids) ||
		got.TMEnd == nil || got.NextAttemptAt != nil || got.LastHangupReason != store.ReasonNormal {
		t.Fatalf("after the answer: %+v", got)
	}
	if ev := events(); fmt.Sprint(ev) != "[task.created task.started task.started task.completed]" {
		t.Fatalf("events %v", ev)
	}
	// Nothing more happens to a completed task.
	r.clk.add(time.Hour)
	r.s.step(ctx)
	if n := len(r.calls.calls()); n != 2 {
		t.Fatalf("%d calls after completion", n)
	}
	if _, err := r.s.Cancel(ctx, task.ID); !errors.Is(err, ErrTaskState) {
		t.Fatalf("cancel a completed task: %v, want ErrTaskState", err)
	}
}

// Attempts run out: the task fails with the last reason; a reason not in
// retry_on fails it at once.
func TestTaskFailsWhenAttemptsRunOut(t *testing.T) {
	r := newTaskRig(t, "")
	ctx := context.Background()
	a := r.create(t, &store.Task{CallRequest: store.CallRequest{To: "1002", FlowID: "f"}, MaxAttempts: 2, RetryIntervalS: 1})
	b := r.create(t, &store.Task{CallRequest: store.CallRequest{To: "1003", FlowID: "f"}, MaxAttempts: 5,
		RetryOn: []store.HangupReason{store.ReasonBusy}})
	r.s.step(ctx)
	ids := r.calls.calls()
	if len(ids) != 2 {
		t.Fatalf("%d calls, want 2", len(ids))
	}
	r.calls.end(t, r.task(t, a.ID).CurrentCallID, false, store.ReasonNoAnswer, 480)
	r.calls.end(t, r.task(t, b.ID).CurrentCallID, false, store.ReasonFailed, 503) // not in b's retry_on
	r.s.step(ctx)
	if got := r.task(t, b.ID); got.Status != store.TaskFailed || got.Attempts != 1 || got.LastSIPCode != 503 {
		t.Fatalf("b: %+v", got)
	}
	r.clk.add(time.Second)
	r.s.step(ctx)
	ids = r.calls.calls()
	if len(ids) != 3 {
		t.Fatalf("%d calls, want 3", len(ids))
	}
	r.calls.end(t, ids[2], false, store.ReasonNoAnswer, 480)
	r.s.step(ctx)
	if got := r.task(t, a.ID); got.Status != store.TaskFailed || got.Attempts != 2 || len(got.CallIDs) != 2 ||
		got.LastHangupReason != store.ReasonNoAnswer {
		t.Fatalf("a: %+v", got)
	}
}

// Cancel stops a pending task before its time, and hangs up the call of a
// task in progress; neither calls again.
func TestTaskCancel(t *testing.T) {
	r := newTaskRig(t, "")
	ctx := context.Background()
	events := r.events(t)
	later := r.create(t, &store.Task{CallRequest: store.CallRequest{To: "1002", FlowID: "f"}, ScheduledAt: r.clk.now().Add(time.Hour)})
	now := r.create(t, &store.Task{CallRequest: store.CallRequest{To: "1003", FlowID: "f"}, MaxAttempts: 3})
	r.s.step(ctx)
	ids := r.calls.calls()
	if len(ids) != 1 {
		t.Fatalf("%d calls, want 1", len(ids))
	}
	if got, err := r.s.Cancel(ctx, later.ID); err != nil || got.Status != store.TaskCancelled || got.TMEnd == nil {
		t.Fatalf("cancel pending: %+v %v", got, err)
	}
	got, err := r.s.Cancel(ctx, now.ID)
	if err != nil || got.Status != store.TaskCancelled || fmt.Sprint(got.CallIDs) != fmt.Sprint(ids) {
		t.Fatalf("cancel in progress: %+v %v", got, err)
	}
	if fmt.Sprint(r.calls.hungUp) != fmt.Sprint(ids) {
		t.Fatalf("hung up %v, want %v", r.calls.hungUp, ids)
	}
	// The call's end (busy, retryable) does not bring the task back.
	r.calls.end(t, ids[0], false, store.ReasonBusy, 486)
	r.clk.add(2 * time.Hour)
	r.s.step(ctx)
	if n := len(r.calls.calls()); n != 1 {
		t.Fatalf("%d calls after cancelling, want 1", n)
	}
	if got := r.task(t, now.ID); got.Status != store.TaskCancelled {
		t.Fatalf("after the call ended: %+v", got)
	}
	if _, err := r.s.Cancel(ctx, now.ID); !errors.Is(err, ErrTaskState) {
		t.Fatalf("cancel twice: %v", err)
	}
	if _, err := r.s.Execute(ctx, later.ID); !errors.Is(err, ErrTaskState) {
		t.Fatalf("execute a cancelled task: %v", err)
	}
	if err := r.s.Delete(ctx, later.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.s.Cancel(ctx, later.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("cancel a deleted task: %v", err)
	}
	if ev := events(); fmt.Sprint(ev) != "[task.created task.created task.started task.cancelled task.cancelled]" {
		t.Fatalf("events %v", ev)
	}
}

// Execute runs a task scheduled for later at once.
func TestTaskExecuteNow(t *testing.T) {
	r := newTaskRig(t, "")
	ctx := context.Background()
	task := r.create(t, &store.Task{CallRequest: store.CallRequest{To: "1002", FlowID: "f"}, ScheduledAt: r.clk.now().Add(24 * time.Hour)})
	r.s.step(ctx)
	if n := len(r.calls.calls()); n != 0 {
		t.Fatalf("%d calls before execute", n)
	}
	if _, err := r.s.Execute(ctx, task.ID); err != nil {
		t.Fatal(err)
	}
	r.s.step(ctx)
	if n := len(r.calls.calls()); n != 1 {
		t.Fatalf("%d calls after execute, want 1", n)
	}
	if _, err := r.s.Execute(ctx, task.ID); !errors.Is(err, ErrTaskState) {
		t.Fatalf("execute in progress: %v", err)
	}
	if err := r.s.Delete(ctx, task.ID); !errors.Is(err, ErrTaskState) {
		t.Fatalf("delete in progress: %v", err)
	}
}

// A task through a trunk at its max_calls stays pending and is tried again
// TrunkWait later; once a slot frees, it goes.
func TestTaskWaitsForFullTrunk(t *testing.T) {
	r := newTaskRig(t, "")
	ctx := context.Background()
	tr := &store.Trunk{Name: "carrier", Host: "127.0.0.1", Port: 5099, Transport: "udp", Enabled: true, MaxCalls: 2}
	if err := r.db.CreateTrunk(ctx, tr); err != nil {
		t.Fatal(err)
	}
	var tasks []*store.Task
	for i := range 3 {
		tasks = append(tasks, r.create(t, &store.Task{CallRequest: store.CallRequest{To: fmt.Sprintf("+3491000000%d", i), Trunk: "carrier", FlowID: "f"}}))
	}
	r.s.step(ctx)
	ids := r.calls.calls()
	if len(ids) != 2 {
		t.Fatalf("%d calls through a trunk of 2, want 2", len(ids))
	}
	// Equally due tasks go in id order: whichever is left waits.
	var waiting *store.Task
	for _, task := range tasks {
		if got := r.task(t, task.ID); got.Status == store.TaskPending {
			waiting = got
		}
	}
	if waiting == nil || waiting.Status != store.TaskPending || waiting.Attempts != 0 || waiting.NextAttemptAt == nil ||
		!waiting.NextAttemptAt.Equal(r.clk.now().Add(10*time.Second)) {
		t.Fatalf("third task: %+v", waiting)
	}
	// The SIP side reports the two as live too; one ends.
	r.mu.Lock()
	r.trunk[tr.ID] = 2
	r.mu.Unlock()
	r.calls.end(t, ids[0], true, store.ReasonNormal, 0)
	r.clk.add(10 * time.Second)
	r.s.step(ctx)
	if n := len(r.calls.calls()); n != 2 {
		t.Fatalf("%d calls while SIP still counts 2 live on the trunk, want 2", n)
	}
	r.mu.Lock()
	r.trunk[tr.ID] = 1
	r.mu.Unlock()
	r.clk.add(10 * time.Second)
	r.s.step(ctx)
	if n := len(r.calls.calls()); n != 3 {
		t.Fatalf("%d calls once a slot freed, want 3", n)
	}
	if got := r.task(t, waiting.ID); got.Status != store.TaskInProgress || got.Attempts != 1 {
		t.Fatalf("third task: %+v", got)
	}
}

// A server that stopped (or crashed) during calls leaves tasks
// in_progress; the next start retries an unanswered attempt at once when
// attempts remain, fails it when none do, and completes an answered one.
func TestTaskRecoveryAfterRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	r := newTaskRig(t, path)
	ctx := context.Background()
	retry := r.create(t, &store.Task{CallRequest: store.CallRequest{To: "1001", FlowID: "f"}, MaxAttempts: 2})
	last := r.create(t, &store.Task{CallRequest: store.CallRequest{To: "1002", FlowID: "f"}, MaxAttempts: 1})
	talked := r.create(t, &store.Task{CallRequest: store.CallRequest{To: "1003", FlowID: "f"}, MaxAttempts: 3})
	r.s.step(ctx)
	ids := r.calls.calls()
	if len(ids) != 3 {
		t.Fatalf("%d calls, want 3", len(ids))
	}
	// One call was answered before the "crash"; none has ended.
	firstCall := r.task(t, retry.ID).CurrentCallID
	rec, _ := r.db.GetCall(ctx, r.task(t, talked.ID).CurrentCallID)
	answeredAt := time.Now().UTC()
	rec.Status, rec.TMProgressing = store.StatusProgressing, &answeredAt
	if err := r.db.UpdateCall(ctx, rec); err != nil {
		t.Fatal(err)
	}

	// One more was claimed, but the process stopped before placing its call.
	claimed := r.create(t, &store.Task{CallRequest: store.CallRequest{To: "1004", FlowID: "f"}, ScheduledAt: r.clk.now().Add(time.Hour)})
	claimed.Status, claimed.Attempts, claimed.NextAttemptAt = store.TaskInProgress, 1, nil
	if err := r.db.UpdateTask(ctx, claimed, store.TaskPending); err != nil {
		t.Fatal(err)
	}

	// A new process on the same file: serve closes the unfinished calls,
	// then the scheduler starts.
	r2 := newTaskRig(t, path)
	if _, err := r2.db.CloseUnfinishedCalls(ctx, store.ReasonServerRestart); err != nil {
		t.Fatal(err)
	}
	events := r2.events(t)
	if err := r2.s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r2.s.Close)
	// Recovery is done when Start returns; the loop may already be placing
	// the retry, so read the outcome of the other two first.
	if got := r2.task(t, last.ID); got.Status != store.TaskFailed || got.LastHangupReason != store.ReasonServerRestart || got.Attempts != 1 {
		t.Fatalf("no attempts left: %+v", got)
	}
	if got := r2.task(t, talked.ID); got.Status != store.TaskCompleted || got.Attempts != 1 {
		t.Fatalf("answered before the crash: %+v", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(r2.task(t, retry.ID).CallIDs) < 2 || len(r2.task(t, claimed.ID).CallIDs) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the recovered task was never retried")
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := r2.task(t, retry.ID)
	if got.Attempts != 2 || len(got.CallIDs) != 2 || got.CallIDs[0] != firstCall || !slices.Contains(r2.calls.calls(), got.CallIDs[1]) {
		t.Fatalf("retried task: %+v", got)
	}
	if got := r2.task(t, claimed.ID); got.Attempts != 1 || len(got.CallIDs) != 1 {
		t.Fatalf("claimed task: %d attempts (the uncalled one given back), calls %v", got.Attempts, got.CallIDs)
	}
	// Recovery goes through the tasks in creation order, and these two
	// may share a millisecond (then their random ids decide): either order.
	ev := events()
	if first := slices.Sorted(slices.Values(ev[:2])); fmt.Sprint(first) != "[task.completed task.failed]" {
		t.Fatalf("events %v", ev)
	}
}

// The running loop: Wake after moving the clock starts a due task, a
// call.hangup event finishes its attempt, and Close stops it.
func TestTaskSchedulerLoop(t *testing.T) {
	r := newTaskRig(t, "")
	ctx := context.Background()
	sub := r.bus.Subscribe(64, func(ev Event) bool { return ev.Type == EventTaskStarted || ev.Type == EventTaskCompleted })
	defer sub.Close()
	if err := r.s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.s.Close()
	task := r.create(t, &store.Task{CallRequest: store.CallRequest{To: "1002", FlowID: "f"}, ScheduledAt: r.clk.now().Add(time.Hour)})
	r.clk.add(time.Hour)
	r.s.Wake()
	next := func(want string) Event {
		select {
		case ev := <-sub.C:
			if ev.Type != want {
				t.Fatalf("event %s, want %s", ev.Type, want)
			}
			return ev
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s", want)
		}
		return Event{}
	}
	started := next(EventTaskStarted)
	if started.CallID == "" || started.Data.(store.Task).ID != task.ID {
		t.Fatalf("task.started %+v", started)
	}
	r.calls.end(t, started.CallID, true, store.ReasonNormal, 0)
	done := next(EventTaskCompleted)
	if done.Data.(store.Task).Status != store.TaskCompleted {
		t.Fatalf("task.completed %+v", done)
	}
	r.s.Close()
	r.s.Close() // twice is fine
}

// Create refuses bad schedules with the field at fault and passes the call
// check's error through.
func TestTaskCreateChecks(t *testing.T) {
	r := newTaskRig(t, "")
	ctx := context.Background()
	for _, c := range []struct {
		task  store.Task
		field string
	}{
		{store.Task{CallRequest: store.CallRequest{To: "1"}, MaxAttempts: 11}, "max_attempts"},
		{store.Task{CallRequest: store.CallRequest{To: "1"}, MaxAttempts: -1}, "max_attempts"},
		{store.Task{CallRequest: store.CallRequest{To: "1"}, RetryIntervalS: -5}, "retry_interval_s"},
		{store.Task{CallRequest: store.CallRequest{To: "1"}, RetryOn: []store.HangupReason{"busy", "normal"}}, "retry_on[1]"},
		{store.Task{}, "to"},
	} {
		err := r.s.Create(ctx, &c.task)
		var re *RequestError
		if !errors.As(err, &re) || re.Field != c.field {
			t.Errorf("%+v: %v, want a RequestError on %s", c.task, err, c.field)
		}
	}
	r.calls.checkErr = &RequestError{Field: "flow_id", Msg: "no such flow", Err: store.ErrNotFound}
	if err := r.s.Create(ctx, &store.Task{CallRequest: store.CallRequest{To: "1", FlowID: "x"}}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown flow: %v", err)
	}
	if list, _, _ := r.db.ListTasks(ctx, store.ListOptions{}); len(list) != 0 {
		t.Fatalf("%d tasks stored from bad requests", len(list))
	}
	// An empty retry_on never retries.
	r.calls.checkErr = nil
	task := r.create(t, &store.Task{CallRequest: store.CallRequest{To: "1"}, MaxAttempts: 3, RetryOn: []store.HangupReason{}})
	r.s.step(ctx)
	r.calls.end(t, r.calls.calls()[0], false, store.ReasonBusy, 486)
	r.s.step(ctx)
	if got := r.task(t, task.ID); got.Status != store.TaskFailed || got.Attempts != 1 {
		t.Fatalf("empty retry_on: %+v", got)
	}
}

// Outbound calls unavailable (shutting down) is not an attempt: the task
// waits and keeps its attempts.
func TestTaskOutboundUnavailableWaits(t *testing.T) {
	r := newTaskRig(t, "")
	ctx := context.Background()
	task := r.create(t, &store.Task{CallRequest: store.CallRequest{To: "1"}})
	r.calls.origErr = fmt.Errorf("%w: shutting down", ErrOutboundUnavailable)
	r.s.step(ctx)
	got := r.task(t, task.ID)
	if got.Status != store.TaskPending || got.Attempts != 0 || got.LastError == "" || !got.NextAttemptAt.Equal(r.clk.now().Add(10*time.Second)) {
		t.Fatalf("after unavailable: %+v", got)
	}
	// Any other error is a failed attempt.
	r.calls.origErr = errors.New("flow vanished")
	r.clk.add(10 * time.Second)
	r.s.step(ctx)
	if got := r.task(t, task.ID); got.Status != store.TaskFailed || got.Attempts != 1 || got.LastError != "flow vanished" ||
		got.LastHangupReason != store.ReasonFailed {
		t.Fatalf("after an error: %+v", got)
	}
}

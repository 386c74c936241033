package flow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/voxbridge/voxbridge/store"
)

// Task limits and defaults.
const (
	MaxTaskAttempts      = 10
	DefaultRetryInterval = 300 * time.Second
	maxRetryInterval     = 7 * 24 * time.Hour
	// defaultTrunkWait is how long a task whose trunk is full waits before
	// it looks again.
	defaultTrunkWait = 5 * time.Second
	// defaultTaskPoll bounds how long the scheduler goes without looking
	// at its calls in progress, should a call.hangup event be lost.
	defaultTaskPoll = 5 * time.Second
	// dueBatch is how many due tasks one pass starts at most; the next
	// pass follows at once.
	dueBatch = 50
)

// DefaultRetryOn are the hangup reasons a task retries on by default.
var DefaultRetryOn = []store.HangupReason{store.ReasonBusy, store.ReasonNoAnswer, store.ReasonFailed}

// RetryReasons are the reasons retry_on may name: the ways a call can end
// without being answered.
var RetryReasons = []store.HangupReason{store.ReasonBusy, store.ReasonNoAnswer, store.ReasonFailed,
	store.ReasonCancel, store.ReasonTimeout, store.ReasonError, store.ReasonCodec}

// ErrTaskState is returned (wrapped, naming the status) for an action the
// task's status does not allow: cancelling a finished task, running one
// that is not pending, deleting one in progress.
var ErrTaskState = errors.New("task state does not allow this")

// TaskCalls is what the scheduler needs of the call controller.
type TaskCalls interface {
	CheckOriginate(ctx context.Context, req OriginateRequest) error
	Originate(ctx context.Context, req OriginateRequest) (store.Call, error)
	CallAction(ctx context.Context, callID string, a CallAction) (CallControlState, error)
}

// CheckOriginate validates req as Originate would, without placing a call:
// a task's call is checked when the task is made, not when it runs.
func (ct *Controller) CheckOriginate(ctx context.Context, req OriginateRequest) error {
	_, _, err := ct.checkOriginate(ctx, req)
	return err
}

// SchedulerConfig wires a Scheduler. Store, Calls and Bus are required.
type SchedulerConfig struct {
	Store *store.DB
	Calls TaskCalls
	// Bus carries the task events and tells the scheduler when a call
	// ends (call.hangup).
	Bus *Bus
	// TrunkCalls reports the live outbound calls through a trunk by id
	// (sip.Server.TrunkCalls); nil counts only the tasks' own calls.
	TrunkCalls func(trunkID string) int
	// Now is the clock (nil: time.Now); tests drive it and call Wake.
	Now    func() time.Time
	Logger *slog.Logger
	// TrunkWait is how long a task waits for a full trunk before trying
	// again (0: 5 s); Poll bounds the time between two looks at the calls
	// in progress (0: 5 s).
	TrunkWait, Poll time.Duration
}

// Scheduler places the calls of tasks when they are due, retries them,
// and keeps each task's record. All of its state is in the store, so that
// tasks survive a restart; one goroutine (Start … Close) does the work.
type Scheduler struct {
	cfg  SchedulerConfig
	log  *slog.Logger
	wake chan struct{}
	// ours are the calls this scheduler placed and has not seen end: only
	// their call.hangup wakes it (the bus filter reads it, lock-free).
	ours sync.Map

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewScheduler checks cfg and returns a scheduler that is not running yet.
func NewScheduler(cfg SchedulerConfig) (*Scheduler, error) {
	if cfg.Store == nil || cfg.Calls == nil || cfg.Bus == nil {
		return nil, errors.New("task scheduler: store, calls and bus required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TrunkWait <= 0 {
		cfg.TrunkWait = defaultTrunkWait
	}
	if cfg.Poll <= 0 {
		cfg.Poll = defaultTaskPoll
	}
	return &Scheduler{cfg: cfg, log: cfg.Logger.With("component", "tasks"), wake: make(chan struct{}, 1)}, nil
}

func (s *Scheduler) now() time.Time { return s.cfg.Now().UTC() }

// Start recovers the tasks a previous run left in progress, then runs the
// scheduler until Close.
func (s *Scheduler) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("task scheduler: already started")
	}
	s.started = true
	s.mu.Unlock()
	if err := s.recoverTasks(ctx); err != nil {
		return err
	}
	// Subscribed before the loop starts, so no hangup is missed between
	// a call's start and the loop's first wait.
	sub := s.cfg.Bus.Subscribe(256, func(ev Event) bool {
		if ev.Type != EventCallHangup {
			return false
		}
		_, ok := s.ours.Load(ev.CallID)
		return ok
	})
	lctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.cancel, s.done = cancel, make(chan struct{})
	s.mu.Unlock()
	go s.loop(lctx, sub)
	return nil
}

// Close stops the scheduler and waits for it. Calls in progress go on;
// their tasks stay in_progress and the next Start recovers them.
func (s *Scheduler) Close() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel = nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Wake makes the scheduler look at its tasks now (a new or changed task,
// or a test's clock moved); it never blocks.
func (s *Scheduler) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Scheduler) loop(ctx context.Context, sub *Subscription) {
	defer close(s.done)
	defer sub.Close()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		// Reset discards a stale expiry (Go 1.23 timers).
		timer.Reset(s.step(ctx))
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-timer.C:
		case <-sub.C: // one of our calls ended: step reads its record
		}
	}
}

// step finishes the attempts whose calls ended, starts the due tasks and
// returns how long to wait before the next step.
func (s *Scheduler) step(ctx context.Context) time.Duration {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	inProgress, err := s.cfg.Store.TasksInStatus(ctx, store.TaskInProgress)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("tasks in progress", "err", err)
		}
		return s.cfg.Poll
	}
	// Forget the calls of tasks no longer in progress (cancelled ones).
	live := make(map[string]bool, len(inProgress))
	for _, t := range inProgress {
		live[t.CurrentCallID] = true
	}
	s.ours.Range(func(id, _ any) bool {
		if !live[id.(string)] {
			s.ours.Delete(id)
		}
		return true
	})
	busy := map[string]int{} // trunk name → this scheduler's calls through it
	for i := range inProgress {
		t := &inProgress[i]
		if s.reconcile(ctx, t) {
			continue
		}
		if t.Trunk != "" {
			busy[t.Trunk]++
		}
	}
	due, err := s.cfg.Store.DueTasks(ctx, s.now(), dueBatch)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("due tasks", "err", err)
		}
		return s.cfg.Poll
	}
	for i := range due {
		if ctx.Err() != nil {
			return 0
		}
		t := &due[i]
		if s.trunkFull(ctx, t, busy) {
			continue
		}
		if s.startAttempt(ctx, t) && t.Trunk != "" {
			busy[t.Trunk]++
		}
	}
	if len(due) == dueBatch {
		return 0
	}
	wait := s.cfg.Poll
	if next, ok, err := s.cfg.Store.NextTaskAttempt(ctx); err == nil && ok {
		wait = min(wait, max(next.Sub(s.now()), 0))
	}
	return wait
}

// reconcile finishes t's attempt when its call has ended; it reports
// whether t is no longer in progress.
func (s *Scheduler) reconcile(ctx context.Context, t *store.Task) bool {
	if t.CurrentCallID == "" {
		return false // being started by this scheduler (only it starts calls)
	}
	rec, err := s.cfg.Store.GetCall(ctx, t.CurrentCallID)
	if errors.Is(err, store.ErrNotFound) {
		// The record is gone (deleted by hand): nothing will end it.
		rec = &store.Call{Status: store.StatusHangup, HangupReason: store.ReasonError}
	} else if err != nil {
		s.log.Error("task call", "task_id", t.ID, "call_id", t.CurrentCallID, "err", err)
		return false
	}
	if rec.Status != store.StatusHangup {
		return false
	}
	s.endAttempt(ctx, t, rec.TMProgressing != nil, rec.HangupReason, rec.SIPCode, "")
	return true
}

// trunkFull postpones t when its trunk has no free call slot.
func (s *Scheduler) trunkFull(ctx context.Context, t *store.Task, busy map[string]int) bool {
	if t.Trunk == "" {
		return false
	}
	tr, err := s.cfg.Store.TrunkByName(ctx, t.Trunk)
	if err != nil || tr.MaxCalls <= 0 {
		return false // a missing trunk fails in Originate, with the reason
	}
	live := busy[t.Trunk]
	if s.cfg.TrunkCalls != nil {
		// The SIP count also has calls that are not tasks'; ours may not
		// be in it yet (the dialing is asynchronous), hence the max.
		live = max(live, s.cfg.TrunkCalls(tr.ID))
	}
	if live < tr.MaxCalls {
		return false
	}
	next := s.now().Add(s.cfg.TrunkWait)
	t.NextAttemptAt = &next
	if err := s.cfg.Store.UpdateTask(ctx, t, store.TaskPending); err != nil && !errors.Is(err, store.ErrConflict) {
		s.log.Error("postpone task", "task_id", t.ID, "err", err)
	}
	s.log.Debug("task waits for its trunk", "task_id", t.ID, "trunk", t.Trunk, "live", live, "max_calls", tr.MaxCalls)
	return true
}

// startAttempt claims t (pending → in_progress) and places its call; it
// reports whether a call is now in progress.
func (s *Scheduler) startAttempt(ctx context.Context, t *store.Task) bool {
	t.Status, t.Attempts, t.NextAttemptAt, t.CurrentCallID, t.LastError = store.TaskInProgress, t.Attempts+1, nil, "", ""
	if err := s.cfg.Store.UpdateTask(ctx, t, store.TaskPending); err != nil {
		if !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) {
			s.log.Error("claim task", "task_id", t.ID, "err", err)
		}
		return false // cancelled, run or deleted meanwhile
	}
	rec, err := s.cfg.Calls.Originate(ctx, OriginateRequestFrom(t.CallRequest))
	if err != nil && (ctx.Err() != nil || errors.Is(err, ErrOutboundUnavailable)) {
		// Closing, or no calls can be placed now: not the callee's doing,
		// so the attempt is given back and the task waits. The write must
		// outlive a cancelled ctx, or the task would stay in progress.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		next := s.now().Add(s.cfg.TrunkWait)
		t.Status, t.Attempts, t.NextAttemptAt, t.LastError = store.TaskPending, t.Attempts-1, &next, err.Error()
		if uerr := s.cfg.Store.UpdateTask(wctx, t, store.TaskInProgress); uerr != nil && !errors.Is(uerr, store.ErrConflict) {
			s.log.Error("task back to pending", "task_id", t.ID, "err", uerr)
		}
		return false
	}
	if err != nil {
		s.log.Warn("task call not placed", "task_id", t.ID, "err", err)
		s.endAttempt(ctx, t, false, store.ReasonFailed, 0, err.Error())
		return false
	}
	s.ours.Store(rec.ID, struct{}{})
	t.CallIDs, t.CurrentCallID = append(t.CallIDs, rec.ID), rec.ID
	if err := s.cfg.Store.UpdateTask(ctx, t, store.TaskInProgress); err != nil {
		// Cancelled while the call was being placed: the cancel could not
		// see the call, so it is ended here; the task keeps its id.
		s.log.Info("task cancelled while its call started; hanging up", "task_id", t.ID, "call_id", rec.ID, "err", err)
		s.hangup(ctx, rec.ID)
		if cur, gerr := s.cfg.Store.GetTask(ctx, t.ID); gerr == nil && cur.Status.Final() {
			cur.CallIDs = append(cur.CallIDs, rec.ID)
			_ = s.cfg.Store.UpdateTask(ctx, cur, cur.Status)
		}
		return false
	}
	s.log.Info("task call started", "task_id", t.ID, "call_id", rec.ID, "attempt", t.Attempts, "to", t.To)
	s.cfg.Bus.Publish(EventTaskStarted, rec.ID, *t)
	return true
}

// endAttempt records the end of t's attempt and what follows: completed
// when answered, pending again when the reason is one to retry on and
// attempts remain, failed otherwise.
func (s *Scheduler) endAttempt(ctx context.Context, t *store.Task, answered bool, reason store.HangupReason, code int, errMsg string) {
	callID := t.CurrentCallID
	now := s.now()
	t.CurrentCallID, t.LastHangupReason, t.LastSIPCode, t.LastError = "", reason, code, errMsg
	event := ""
	switch {
	case answered:
		t.Status, t.TMEnd, event = store.TaskCompleted, &now, EventTaskCompleted
	case t.Attempts < t.MaxAttempts && slices.Contains(t.RetryOn, reason):
		next := now.Add(time.Duration(t.RetryIntervalS) * time.Second)
		t.Status, t.NextAttemptAt = store.TaskPending, &next
	default:
		t.Status, t.TMEnd, event = store.TaskFailed, &now, EventTaskFailed
	}
	if err := s.cfg.Store.UpdateTask(ctx, t, store.TaskInProgress); err != nil {
		if !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) {
			s.log.Error("end task attempt", "task_id", t.ID, "err", err)
		}
		return // cancelled or deleted meanwhile: that answer stands
	}
	s.log.Info("task attempt ended", "task_id", t.ID, "call_id", callID, "answered", answered, "reason", reason,
		"status", t.Status, "attempts", t.Attempts)
	if event != "" {
		s.cfg.Bus.Publish(event, callID, *t)
	}
}

// recoverTasks settles the tasks a previous run left in progress (it
// crashed or stopped during a call). The interrupted attempt counts: the
// callee's phone may have rung. If that call was answered the task is
// completed (calling again would reach the person twice); otherwise it is
// pending again for an immediate retry, whatever retry_on says (the
// failure was ours, not the callee's), or failed with reason
// server_restart when it has no attempts left. A task stopped before its
// call was placed gets that attempt back.
func (s *Scheduler) recoverTasks(ctx context.Context) error {
	left, err := s.cfg.Store.TasksInStatus(ctx, store.TaskInProgress)
	if err != nil {
		return fmt.Errorf("recover tasks: %w", err)
	}
	for i := range left {
		t := &left[i]
		if t.CurrentCallID == "" {
			// Stopped between claiming the task and placing its call: no
			// call was made, so the attempt is given back.
			t.Status, t.Attempts, t.NextAttemptAt = store.TaskPending, max(t.Attempts-1, 0), new(s.now())
			if err := s.cfg.Store.UpdateTask(ctx, t, store.TaskInProgress); err != nil {
				return fmt.Errorf("recover task %s: %w", t.ID, err)
			}
			continue
		}
		answered, code := false, 0
		if rec, err := s.cfg.Store.GetCall(ctx, t.CurrentCallID); err == nil {
			answered, code = rec.TMProgressing != nil, rec.SIPCode
		}
		callID, now := t.CurrentCallID, s.now()
		t.CurrentCallID, t.LastHangupReason, t.LastSIPCode = "", store.ReasonServerRestart, code
		event := ""
		switch {
		case answered:
			t.Status, t.TMEnd, event = store.TaskCompleted, &now, EventTaskCompleted
		case t.Attempts < t.MaxAttempts:
			t.Status, t.NextAttemptAt = store.TaskPending, &now
		default:
			t.Status, t.TMEnd, event = store.TaskFailed, &now, EventTaskFailed
		}
		if err := s.cfg.Store.UpdateTask(ctx, t, store.TaskInProgress); err != nil {
			return fmt.Errorf("recover task %s: %w", t.ID, err)
		}
		s.log.Warn("task left in progress by a previous run", "task_id", t.ID, "call_id", callID, "now", t.Status)
		if event != "" {
			s.cfg.Bus.Publish(event, callID, *t)
		}
	}
	return nil
}

// OriginateRequestFrom is the call a task places.
func OriginateRequestFrom(c store.CallRequest) OriginateRequest {
	return OriginateRequest{
		To: c.To, From: c.From, CallerName: c.CallerName, Trunk: c.Trunk,
		FlowID: c.FlowID, Actions: c.Actions, AgentID: c.AgentID,
		Variables: c.Variables, Context: c.Context,
		MaxDuration: time.Duration(c.MaxDurationS) * time.Second,
		RingTimeout: time.Duration(c.RingTimeoutS) * time.Second,
		Record:      c.Record, Metadata: c.Metadata,
	}
}

// Create checks t (its call as Originate would, with *RequestError or
// *ValidationError naming the field; its schedule), fills in the
// defaults (scheduled now, one attempt, 300 s apart, retry on busy,
// noanswer and failed; a nil RetryOn is the default, an empty one never
// retries) and stores it as pending.
func (s *Scheduler) Create(ctx context.Context, t *store.Task) error {
	switch {
	case t.MaxAttempts == 0:
		t.MaxAttempts = 1
	case t.MaxAttempts < 0 || t.MaxAttempts > MaxTaskAttempts:
		return badRequest("max_attempts", "must be from 1 to %d", MaxTaskAttempts)
	}
	switch {
	case t.RetryIntervalS == 0:
		t.RetryIntervalS = int(DefaultRetryInterval / time.Second)
	case t.RetryIntervalS < 0 || t.RetryIntervalS > int(maxRetryInterval/time.Second):
		return badRequest("retry_interval_s", "must be from 1 to %d seconds", int(maxRetryInterval/time.Second))
	}
	if t.RetryOn == nil {
		t.RetryOn = slices.Clone(DefaultRetryOn)
	}
	for i, r := range t.RetryOn {
		if !slices.Contains(RetryReasons, r) {
			names := make([]string, len(RetryReasons))
			for j, rr := range RetryReasons {
				names[j] = string(rr)
			}
			return badRequest(fmt.Sprintf("retry_on[%d]", i), "unknown reason %q; want one of %s", r, strings.Join(names, ", "))
		}
	}
	if t.ScheduledAt.IsZero() {
		t.ScheduledAt = s.now()
	}
	if err := s.cfg.Calls.CheckOriginate(ctx, OriginateRequestFrom(t.CallRequest)); err != nil {
		return err
	}
	t.Attempts, t.CallIDs, t.CurrentCallID = 0, nil, ""
	if err := s.cfg.Store.CreateTask(ctx, t); err != nil {
		return err
	}
	s.log.Info("task created", "task_id", t.ID, "to", t.To, "scheduled_at", t.ScheduledAt)
	s.cfg.Bus.Publish(EventTaskCreated, "", *t)
	s.Wake()
	return nil
}

// Execute makes a pending task due now, whatever its schedule.
func (s *Scheduler) Execute(ctx context.Context, id string) (*store.Task, error) {
	return s.change(ctx, id, func(t *store.Task) error {
		if t.Status != store.TaskPending {
			return fmt.Errorf("%w: task %s is %s; only a pending task can run", ErrTaskState, id, t.Status)
		}
		now := s.now()
		t.NextAttemptAt = &now
		return nil
	}, "")
}

// Cancel ends a pending or in-progress task; the call in progress, if
// any, is hung up. A finished task cannot be cancelled.
func (s *Scheduler) Cancel(ctx context.Context, id string) (*store.Task, error) {
	var callID string
	t, err := s.change(ctx, id, func(t *store.Task) error {
		if t.Status.Final() {
			return fmt.Errorf("%w: task %s is already %s", ErrTaskState, id, t.Status)
		}
		now := s.now()
		callID = t.CurrentCallID
		t.Status, t.NextAttemptAt, t.TMEnd, t.CurrentCallID = store.TaskCancelled, nil, &now, ""
		return nil
	}, EventTaskCancelled)
	if err != nil {
		return nil, err
	}
	if callID != "" {
		s.hangup(ctx, callID)
	}
	return t, nil
}

// Delete removes a task that is not in progress.
func (s *Scheduler) Delete(ctx context.Context, id string) error {
	err := s.cfg.Store.DeleteTask(ctx, id)
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%w: task %s is in progress; cancel it first", ErrTaskState, id)
	}
	return err
}

// change applies f to the stored task and writes it if its status did not
// change meanwhile (the scheduler may move it), trying again from the new
// state a few times; then it publishes event (if any) and wakes the loop.
func (s *Scheduler) change(ctx context.Context, id string, f func(*store.Task) error, event string) (*store.Task, error) {
	for range 5 {
		t, err := s.cfg.Store.GetTask(ctx, id)
		if err != nil {
			return nil, err
		}
		from := t.Status
		if err := f(t); err != nil {
			return nil, err
		}
		err = s.cfg.Store.UpdateTask(ctx, t, from)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if event != "" {
			s.cfg.Bus.Publish(event, "", *t)
		}
		s.Wake()
		return t, nil
	}
	return nil, fmt.Errorf("task %s: changed too often meanwhile; try again", id)
}

func (s *Scheduler) hangup(ctx context.Context, callID string) {
	_, err := s.cfg.Calls.CallAction(ctx, callID, CallAction{Action: ActionHangup, Reason: "task cancelled"})
	if err != nil && !errors.Is(err, ErrCallNotFound) {
		s.log.Warn("hang up a cancelled task's call", "call_id", callID, "err", err)
	}
}

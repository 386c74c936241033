package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/store"
)

// TaskScheduler keeps scheduled calls (*flow.Scheduler): the API writes
// through it so that the scheduler hears of every change at once.
type TaskScheduler interface {
	Create(ctx context.Context, t *store.Task) error
	Execute(ctx context.Context, id string) (*store.Task, error)
	Cancel(ctx context.Context, id string) (*store.Task, error)
	Delete(ctx context.Context, id string) error
}

// createTaskBody is POST /v1/tasks: the call of POST /v1/calls, when to
// place it and how to retry.
type createTaskBody struct {
	createCallBody
	// ScheduledAt is RFC 3339 (default: now).
	ScheduledAt    string `json:"scheduled_at,omitempty"`
	MaxAttempts    int    `json:"max_attempts,omitempty"`
	RetryIntervalS int    `json:"retry_interval_s,omitempty"`
	// RetryOn absent or null is the default (busy, noanswer, failed); []
	// never retries.
	RetryOn []store.HangupReason `json:"retry_on"`
}

// check refuses what needs no scheduler to know: the call's own checks and
// the time; the scheduler checks the rest (attempts, retries, the call's
// destination and what it runs).
func (b *createTaskBody) check() *apiError {
	if e := b.createCallBody.check(); e != nil {
		return e
	}
	if b.ScheduledAt != "" {
		if _, err := time.Parse(time.RFC3339Nano, b.ScheduledAt); err != nil {
			return badField("scheduled_at", "must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z")
		}
	}
	return nil
}

// tasksAvailable answers 503 when the server runs no scheduler.
func (s *Server) tasksAvailable(w http.ResponseWriter) bool {
	if s.cfg.Tasks == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "scheduled calls are not available on this server")
		return false
	}
	return true
}

func (s *Server) createTask(w http.ResponseWriter, r *http.Request, b *createTaskBody) {
	if !s.tasksAvailable(w) {
		return
	}
	if e := b.check(); e != nil {
		e.write(w)
		return
	}
	// The same fields in the same order: a field added to one and not the
	// other stops the build here.
	t := &store.Task{CallRequest: store.CallRequest(b.createCallBody),
		MaxAttempts: b.MaxAttempts, RetryIntervalS: b.RetryIntervalS, RetryOn: b.RetryOn}
	if b.ScheduledAt != "" {
		t.ScheduledAt, _ = time.Parse(time.RFC3339Nano, b.ScheduledAt) // checked
	}
	if err := s.cfg.Tasks.Create(r.Context(), t); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			invalidFromStore(err, nil).write(w)
			return
		}
		s.originateError(err).write(w)
		return
	}
	w.Header().Set("Location", "/v1/tasks/"+t.ID)
	writeJSON(w, http.StatusCreated, t)
}

// listTasks pages through tasks, newest first; status filters by a comma
// list of statuses.
func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opt, e := listOptions(q)
	if e != nil {
		e.write(w)
		return
	}
	var statuses []store.TaskStatus
	if v := q.Get("status"); v != "" {
		for _, st := range strings.Split(v, ",") {
			st := store.TaskStatus(strings.TrimSpace(st))
			if !st.Valid() {
				badField("status", "unknown status "+strconv.Quote(string(st))+"; want pending, in_progress, completed, failed or cancelled").write(w)
				return
			}
			statuses = append(statuses, st)
		}
	}
	tasks, next, err := s.store.ListTasks(r.Context(), opt, statuses...)
	s.writePage(w, "tasks", tasks, next, err)
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request) {
	t, err := s.store.GetTask(r.Context(), r.PathValue("id"))
	if err != nil {
		s.taskErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// executeTask makes a pending task due now, whatever its scheduled_at.
func (s *Server) executeTask(w http.ResponseWriter, r *http.Request) {
	if !s.tasksAvailable(w) {
		return
	}
	t, err := s.cfg.Tasks.Execute(r.Context(), r.PathValue("id"))
	if err != nil {
		s.taskErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// cancelTask stops a pending or in-progress task (hanging up its call).
func (s *Server) cancelTask(w http.ResponseWriter, r *http.Request) {
	if !s.tasksAvailable(w) {
		return
	}
	t, err := s.cfg.Tasks.Cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		s.taskErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) deleteTask(w http.ResponseWriter, r *http.Request) {
	if !s.tasksAvailable(w) {
		return
	}
	if err := s.cfg.Tasks.Delete(r.Context(), r.PathValue("id")); err != nil {
		s.taskErr(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// taskErr answers 404, 409 (the task's status does not allow it) or 500.
func (s *Server) taskErr(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		notFound("task", r.PathValue("id")).write(w)
	case errors.Is(err, flow.ErrTaskState):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	default:
		s.log.Error("task", "task_id", r.PathValue("id"), "err", err)
		internalError(w)
	}
}

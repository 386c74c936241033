package api

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/store"
)

// listOptions reads page_size and page_token.
func listOptions(q url.Values) (store.ListOptions, *apiError) {
	opt := store.ListOptions{PageToken: q.Get("page_token")}
	if v := q.Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return opt, badField("page_size", "must be a positive integer")
		}
		opt.PageSize = n
	}
	return opt, nil
}

// pageBody is the shape of every list answer.
type pageBody struct {
	Result        any    `json:"result"`
	NextPageToken string `json:"next_page_token"`
}

// writePage answers a list, or the error that made it.
func (s *Server) writePage(w http.ResponseWriter, what string, result any, next string, err error) {
	switch {
	case errors.Is(err, store.ErrBadPageToken):
		badField("page_token", "malformed; pass the next_page_token of the previous page as it is").write(w)
	case errors.Is(err, store.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid_argument", err.Error())
	case err != nil:
		s.log.Error("list "+what, "err", err)
		internalError(w)
	default:
		writeJSON(w, http.StatusOK, pageBody{Result: result, NextPageToken: next})
	}
}

// callFilter reads the call list's filters: status (comma list),
// direction, agent (the agent.id an ai_talk ran), and the creation time
// window from/to (RFC 3339), also spelled created_after/created_before.
func callFilter(q url.Values) (store.CallFilter, *apiError) {
	var f store.CallFilter
	if v := q.Get("status"); v != "" {
		for _, st := range strings.Split(v, ",") {
			st := store.CallStatus(strings.TrimSpace(st))
			if !st.Valid() {
				return f, badField("status", "unknown status "+strconv.Quote(string(st))+"; want dialing, ringing, progressing, terminating, canceling or hangup")
			}
			f.Statuses = append(f.Statuses, st)
		}
	}
	if v := q.Get("direction"); v != "" {
		f.Direction = store.Direction(v)
		if !f.Direction.Valid() {
			return f, badField("direction", "must be incoming or outgoing")
		}
	}
	f.AgentID = q.Get("agent")
	fromName, toName := "from", "to" // as the caller spelled them, for errors
	for _, t := range []struct {
		name, alias string
		to          *time.Time
	}{{"from", "created_after", &f.From}, {"to", "created_before", &f.To}} {
		if q.Has(t.name) && q.Has(t.alias) {
			return f, badField(t.alias, "give "+t.name+" or "+t.alias+", not both: they are the same bound")
		}
		if q.Has(t.alias) {
			t.name = t.alias
			if t.to == &f.From {
				fromName = t.alias
			} else {
				toName = t.alias
			}
		}
		if v := q.Get(t.name); v != "" {
			tm, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return f, badField(t.name, "must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z")
			}
			*t.to = tm
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return f, badField(toName, "must be after "+fromName)
	}
	return f, nil
}

func (s *Server) listCalls(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opt, e := listOptions(q)
	if e == nil {
		var f store.CallFilter
		if f, e = callFilter(q); e == nil {
			calls, next, err := s.store.ListCalls(r.Context(), opt, f)
			s.writePage(w, "calls", calls, next, err)
			return
		}
	}
	e.write(w)
}

func (s *Server) getCall(w http.ResponseWriter, r *http.Request) {
	c, err := s.store.GetCall(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "call not found")
		return
	}
	if err != nil {
		s.log.Error("get call", "err", err)
		internalError(w)
		return
	}
	actions, aerr := s.store.ListActionRuns(r.Context(), c.ID)
	recs, rerr := s.store.ListRecordings(r.Context(), c.ID)
	latency, lerr := s.store.ListTurnLatency(r.Context(), c.ID)
	if err := errors.Join(aerr, rerr, lerr); err != nil {
		s.log.Error("get call", "call_id", c.ID, "err", err)
		internalError(w)
		return
	}
	writeJSON(w, http.StatusOK, callView{Call: c, Actions: actions, Recordings: viewRecordings(recs), Latency: latencySummary(latency)})
}

// callView is a call with the actions its flows executed, its recordings
// and, when an agent talked, the summary of its turns' latency.
type callView struct {
	*store.Call
	Actions    []store.ActionRun     `json:"actions"`
	Recordings []recordingView       `json:"recordings"`
	Latency    *agent.LatencySummary `json:"latency"`
}

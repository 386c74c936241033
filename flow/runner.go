package flow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/voxbridge/voxbridge/store"
)

// Runner limits.
const (
	// DefaultMaxActions caps the actions one call executes, so a loop in a
	// flow cannot spin forever.
	DefaultMaxActions = 1000
	// maxFlowDepth caps nested fetch_flow calls.
	maxFlowDepth = 10
	// defaultActionTimeout bounds an action that declares no bound of its own.
	defaultActionTimeout = 10 * time.Minute
)

// executor runs one action. It returns the id of the action to continue at
// (a jump), or "" to continue at the action's successor.
type executor func(ctx context.Context, r *run) (jump string, err error)

// errStop ends the flow without error (the stop action).
var errStop = errors.New("flow stopped")

// flowSwitch ends the running flow and starts p in its place (a REFER
// that sent the caller to one of our numbers, refer.go).
type flowSwitch struct{ p *program }

func (f *flowSwitch) Error() string { return "switch to flow " + f.p.flow.ID }

// run is one call's execution of flows: the program counter lives in
// runFlow's frames; what persists across them lives here.
type run struct {
	c        *Call
	executed int
	depth    int
	loops    map[loopKey]int // goto counters
	seq      int             // executed actions, for the record
	// recording is what recording_start started, for recording_stop.
	recording *midRecording

	// The action being executed, for goto's per-action counter and
	// ai_talk's look at what follows it.
	current      *program
	currentIndex int
}

type loopKey struct {
	flow  *Flow
	index int
}

// flowLookup finds a flow by id for fetch_flow and on_complete_flow_id.
type flowLookup func(ctx context.Context, id string) (*program, error)

// runFlow runs p from its first action until it ends, then its
// on_complete flow. It returns when the flow ends, the call ends, or an
// action fails in a way that ends the call.
func (r *run) runFlow(ctx context.Context, p *program) error {
	r.depth++
	defer func() { r.depth-- }()
	if r.depth > maxFlowDepth {
		return fmt.Errorf("flows nested deeper than %d", maxFlowDepth)
	}
	r.c.log.Info("flow start", "flow_id", p.flow.ID, "depth", r.depth)
	for i := 0; i < len(p.steps); {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if r.executed >= r.c.ct.maxActions {
			return fmt.Errorf("executed %d actions: limit reached (a loop in the flow?)", r.executed)
		}
		r.executed++
		st := p.steps[i]
		r.current, r.currentIndex = p, i
		jump, err := r.exec(ctx, p, i, st)
		var fs *flowSwitch
		switch {
		case errors.Is(err, errStop):
			return errStop
		case errors.As(err, &fs):
			if r.depth > 1 {
				return err // the outermost flow is the one replaced
			}
			r.c.log.Info("flow switch", "from_flow_id", p.flow.ID, "flow_id", fs.p.flow.ID)
			r.c.update(func(rec *store.Call) { rec.FlowID = fs.p.flow.ID })
			p, i = fs.p, 0
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			// A failed action is recorded and the flow goes on, as a
			// person would expect of a prompt that could not play.
			r.c.log.Warn("action failed", "flow_id", p.flow.ID, "index", i, "action_id", st.action.ID, "type", st.action.Type, "err", err)
		}
		if jump != "" {
			i = p.index[jump]
		} else {
			i = p.successor(i)
		}
	}
	if next := p.flow.OnCompleteFlowID; next != "" {
		np, err := r.c.ct.lookup(ctx, next)
		if err != nil {
			return fmt.Errorf("on_complete_flow_id %q: %w", next, err)
		}
		return r.runFlow(ctx, np)
	}
	return nil
}

// exec runs one action under its timeout and records it.
func (r *run) exec(ctx context.Context, p *program, i int, st step) (string, error) {
	timeout := st.timeout
	if timeout == 0 {
		timeout = defaultActionTimeout
	}
	actx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		actx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	r.seq++
	rec := store.ActionRun{
		CallID:   r.c.ID(),
		Seq:      r.seq,
		FlowID:   p.flow.ID,
		ActionID: st.action.ID,
		Type:     st.action.Type,
		TMStart:  time.Now().UTC(),
	}
	r.c.setVar("action.id", st.action.ID)
	jump, err := st.exec(actx, r)
	if err == nil && actx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		err = fmt.Errorf("timed out after %v", timeout)
	}
	rec.TMEnd = time.Now().UTC()
	var fs *flowSwitch
	switch {
	case errors.Is(err, errStop):
		rec.Result = "stop"
	case errors.As(err, &fs):
		rec.Result = "flow:" + fs.p.flow.ID
	case err != nil && ctx.Err() != nil:
		rec.Result = "hangup"
	case err != nil:
		rec.Result, rec.Error = "error", err.Error()
	case jump != "":
		rec.Result = "jump:" + jump
	default:
		rec.Result = "ok"
	}
	r.c.recordAction(rec)
	return jump, err
}

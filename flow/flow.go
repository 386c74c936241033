// Package flow is the call controller: it turns an inbound leg into a Call,
// runs the call's flow of actions in one goroutine, and keeps the call
// record up to date.
package flow

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Action is one step of a flow. Option is decoded into the action type's
// typed option struct when the flow is validated.
type Action struct {
	ID     string          `json:"id,omitempty" yaml:"id,omitempty"`
	Type   string          `json:"type" yaml:"type"`
	Option json.RawMessage `json:"option,omitempty" yaml:"option,omitempty"`
	// NextID, when set, is the action that runs after this one instead of
	// the next in the list.
	NextID string `json:"next_id,omitempty" yaml:"next_id,omitempty"`
}

// Flow is an ordered list of actions.
type Flow struct {
	ID      string   `json:"id,omitempty" yaml:"id,omitempty"`
	Name    string   `json:"name,omitempty" yaml:"name,omitempty"`
	Detail  string   `json:"detail,omitempty" yaml:"detail,omitempty"`
	Actions []Action `json:"actions" yaml:"actions"`
	// OnCompleteFlowID runs after this flow's last action, when the call
	// is still up.
	OnCompleteFlowID string `json:"on_complete_flow_id,omitempty" yaml:"on_complete_flow_id,omitempty"`
}

// DefaultFlow answers, greets, runs the echo test until a key or 60 s, says
// goodbye and hangs up.
func DefaultFlow() *Flow {
	return &Flow{
		ID:   "default",
		Name: "echo test",
		Actions: []Action{
			{ID: "answer", Type: "answer"},
			{ID: "greeting", Type: "play", Option: json.RawMessage(`{"prompt":"greeting"}`)},
			{ID: "echo", Type: "echo", Option: json.RawMessage(`{"duration_ms":60000}`)},
			{ID: "goodbye", Type: "play", Option: json.RawMessage(`{"prompt":"goodbye"}`)},
			{ID: "hangup", Type: "hangup"},
		},
	}
}

// maxActions bounds a flow's length; flows are written by people.
const maxActions = 500

// ValidationError names the action and field a flow was refused for.
type ValidationError struct {
	FlowID string
	Index  int    // -1 when the problem is the flow as a whole
	ID     string // the action's id
	Type   string
	Field  string // e.g. "option.timeout_ms"
	Msg    string
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "flow %q", e.FlowID)
	if e.Index >= 0 {
		fmt.Fprintf(&b, ": action %d (id %q, type %q)", e.Index, e.ID, e.Type)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": %s", e.Field)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}

// Validate decodes every action's option strictly and checks its fields and
// targets, naming the action index, id and field of the first problem.
func (f *Flow) Validate() error {
	_, err := f.compile()
	return err
}

// program is a validated flow, ready to run on any number of calls.
type program struct {
	flow  *Flow
	steps []step
	index map[string]int // action id → index
}

// step is one decoded action.
type step struct {
	action Action
	exec   executor
	// timeout bounds the action: 0 means defaultActionTimeout, <0 none
	// (fetch_flow, whose actions have their own).
	timeout time.Duration
	// jumps are the action ids this step may continue at besides its
	// successor; fallsThrough says whether it may continue at its successor.
	jumps        []string
	fallsThrough bool
}

func (f *Flow) compile() (*program, error) {
	verr := func(i int, field, msg string) error {
		e := &ValidationError{FlowID: f.ID, Index: i, Field: field, Msg: msg}
		if i >= 0 {
			e.ID, e.Type = f.Actions[i].ID, f.Actions[i].Type
		}
		return e
	}
	if len(f.Actions) == 0 {
		return nil, verr(-1, "actions", "no actions")
	}
	if len(f.Actions) > maxActions {
		return nil, verr(-1, "actions", fmt.Sprintf("%d actions, more than %d", len(f.Actions), maxActions))
	}
	p := &program{flow: f, steps: make([]step, len(f.Actions)), index: map[string]int{}}
	for i, a := range f.Actions {
		if a.ID == "" {
			continue
		}
		if _, dup := p.index[a.ID]; dup {
			return nil, verr(i, "id", "duplicate action id")
		}
		p.index[a.ID] = i
	}
	for i, a := range f.Actions {
		spec, ok := actionTypes[a.Type]
		if !ok {
			return nil, verr(i, "type", fmt.Sprintf("unknown action type %q", a.Type))
		}
		st, err := spec(a.Option)
		if err != nil {
			var fe *fieldError
			if errors.As(err, &fe) {
				return nil, verr(i, "option."+fe.field, fe.msg)
			}
			return nil, verr(i, "option", err.Error())
		}
		st.action = a
		for _, target := range append([]string{a.NextID}, st.jumps...) {
			if target == "" {
				continue
			}
			if _, ok := p.index[target]; !ok {
				field := "next_id"
				if target != a.NextID {
					field = "option"
				}
				return nil, verr(i, field, fmt.Sprintf("target %q is not an action id in this flow", target))
			}
		}
		p.steps[i] = st
	}
	if i := p.unreachable(); i >= 0 {
		return nil, verr(i, "", "unreachable: no path from the first action leads here")
	}
	return p, nil
}

// successor is the index that runs after step i when it falls through, or
// len(steps) for the end of the flow.
func (p *program) successor(i int) int {
	if next := p.steps[i].action.NextID; next != "" {
		return p.index[next]
	}
	return i + 1
}

// unreachable returns the index of the first action no path from the first
// one reaches, or -1. Such an action (or a loop of them) is a mistake in the
// flow, caught when it is saved rather than never noticed.
func (p *program) unreachable() int {
	seen := make([]bool, len(p.steps))
	stack := []int{0}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if i >= len(p.steps) || seen[i] {
			continue
		}
		seen[i] = true
		if p.steps[i].fallsThrough {
			stack = append(stack, p.successor(i))
		}
		for _, id := range p.steps[i].jumps {
			stack = append(stack, p.index[id])
		}
	}
	for i, ok := range seen {
		if !ok {
			return i
		}
	}
	return -1
}

// fieldError is an option problem tied to one field.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

func badField(field, format string, args ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, args...)}
}

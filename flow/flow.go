// Package flow is the call controller: it turns an inbound leg into a Call,
// runs the call's flow of actions in one goroutine, and keeps the call
// record up to date.
package flow

import (
	"encoding/json"
	"fmt"
	"time"
)

// Action is one step of a flow. Option is decoded into the action type's
// typed option struct when the flow is validated.
type Action struct {
	ID     string          `json:"id,omitempty"`
	Type   string          `json:"type"`
	Option json.RawMessage `json:"option,omitempty"`
}

// Flow is an ordered list of actions.
type Flow struct {
	ID      string   `json:"id,omitempty"`
	Name    string   `json:"name,omitempty"`
	Actions []Action `json:"actions"`
}

// Typed options, one per action type that takes any.
type (
	PlayOption struct {
		// Prompt names an embedded prompt ("greeting", "goodbye").
		Prompt string `json:"prompt,omitempty"`
		// Files are WAV files on disk, played in order.
		Files []string `json:"files,omitempty"`
	}
	EchoOption struct {
		// DurationMS bounds the echo; 0 means the default of 60 s.
		DurationMS int `json:"duration_ms,omitempty"`
		// EndOnDTMF stops the echo on any key (default true).
		EndOnDTMF *bool `json:"end_on_dtmf,omitempty"`
	}
	SleepOption struct {
		DurationMS int `json:"duration_ms"`
	}
	HangupOption struct {
		Reason string `json:"reason,omitempty"`
	}
)

// DefaultEcho is how long an echo action runs without an explicit duration.
const DefaultEcho = 60 * time.Second

// maxSleep bounds a sleep action so a typo cannot park a call for days.
const maxSleep = time.Hour

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

// Validate decodes every action's option strictly and checks its fields,
// naming the action index, id and field of the first problem.
func (f *Flow) Validate() error {
	_, err := f.compile()
	return err
}

// program is a validated flow, ready to run on any number of calls.
type program struct {
	flow  *Flow
	steps []executor
}

func (f *Flow) compile() (*program, error) {
	if len(f.Actions) == 0 {
		return nil, fmt.Errorf("flow %q: no actions", f.ID)
	}
	p := &program{flow: f, steps: make([]executor, len(f.Actions))}
	for i, a := range f.Actions {
		ex, err := decodeAction(a)
		if err != nil {
			return nil, fmt.Errorf("flow %q: action %d (id %q, type %q): %w", f.ID, i, a.ID, a.Type, err)
		}
		p.steps[i] = ex
	}
	return p, nil
}

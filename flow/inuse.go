package flow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/store"
)

// AgentInUse reports whether a live call is talking to the agent id
// (an ai_talk running with it): the API refuses to delete such an agent.
func (ct *Controller) AgentInUse(id string) bool {
	return ct.cfg.Agents.InUse(id)
}

// InUse reports whether an ai_talk session runs with the agent id.
func (a *Agents) InUse(id string) bool {
	if a == nil {
		return false
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.uses[id] > 0
}

// use counts one session of the agent id until the returned func is called.
func (a *Agents) use(id string) (release func()) {
	a.mu.Lock()
	if a.uses == nil {
		a.uses = map[string]int{}
	}
	a.uses[id]++
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		if a.uses[id]--; a.uses[id] <= 0 {
			delete(a.uses, id)
		}
		a.mu.Unlock()
	}
}

// pinFiles records where file-loaded agents came from; a.mu is held.
func (a *Agents) pinFiles(paths map[string]string) {
	if a.files == nil {
		a.files = map[string]string{}
	}
	for id, p := range paths {
		a.files[id] = p
	}
}

// File returns the file an agent was loaded from (--agents-dir), or "" for
// one put by code or the API.
func (a *Agents) File(id string) string {
	if a == nil {
		return ""
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.files[id]
}

// Remove forgets an agent; calls already talking to it keep their copy.
func (a *Agents) Remove(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.defs, id)
	delete(a.files, id)
}

// LoadStore adds the agents made over the API (stored in db), skipping ids
// a file already defines. A stored definition that no longer validates is
// skipped and reported in the error; the others are loaded anyway.
func (a *Agents) LoadStore(ctx context.Context, db *store.DB) ([]string, error) {
	stored, err := db.AllAgents(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	var errs []error
	for _, sa := range stored {
		d, err := agent.ParseDefinition(sa.Definition, "json")
		if err == nil && d.ID != sa.ID {
			err = fmt.Errorf("id %q does not match the row", d.ID)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("stored agent %s: %w", sa.ID, err))
			continue
		}
		if a.File(sa.ID) != "" {
			errs = append(errs, fmt.Errorf("stored agent %s: shadowed by %s", sa.ID, a.File(sa.ID)))
			continue
		}
		if err := a.Put(d); err != nil {
			errs = append(errs, fmt.Errorf("stored agent %s: %w", sa.ID, err))
			continue
		}
		ids = append(ids, sa.ID)
	}
	sort.Strings(ids)
	return ids, errors.Join(errs...)
}

// numberAgentProgram is what a call to a number mapped to an agent runs:
// answer, the conversation, hangup.
func numberAgentProgram(num, agentID string) (*program, error) {
	opt, err := json.Marshal(AITalkOption{AgentID: agentID})
	if err != nil {
		return nil, err
	}
	f := &Flow{ID: "route:number:" + num, Actions: []Action{
		{ID: "answer", Type: "answer"},
		{ID: "agent", Type: "ai_talk", Option: opt},
		{ID: "hangup", Type: "hangup"},
	}}
	return f.compile()
}

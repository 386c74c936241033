package flow

import "sync"

// turnCounter hands out a call's transcript indexes. Every writer of turns
// (ai_talk sessions, one after another, and a live transcription running
// beside them) takes its indexes here, so no turn overwrites another.
type turnCounter struct {
	mu   sync.Mutex
	next int
}

func (tc *turnCounter) take() int {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	i := tc.next
	tc.next++
	return i
}

// agentTurns maps one agent session's own turn numbers (0, 1, … per
// session; a turn is updated under its number until final) to the call's.
type agentTurns struct {
	c  *Call
	mu sync.Mutex
	m  map[int]int
}

// index is the call's index for the session's turn i (negative: none).
func (a *agentTurns) index(i int) int {
	if i < 0 {
		return i
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if ci, ok := a.m[i]; ok {
		return ci
	}
	if a.m == nil {
		a.m = map[int]int{}
	}
	ci := a.c.turns.take()
	a.m[i] = ci
	return ci
}

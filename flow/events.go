package flow

import (
	"sync"
	"sync/atomic"
	"time"
)

// Event types published on the bus.
const (
	EventCallCreated     = "call.created"
	EventCallRinging     = "call.ringing"
	EventCallAnswered    = "call.answered"
	EventCallHangup      = "call.hangup"
	EventDTMF            = "dtmf"
	EventActionExecuted  = "action.executed"
	EventTranscriptPart  = "transcript.partial"
	EventTranscriptFinal = "transcript.final"
	EventAgentTurn       = "agent.turn"
	EventRecordingReady  = "recording.ready"
	// A task's life (flow/tasks.go); data is the task. task.started
	// carries the attempt's call_id, completed and failed the last one's.
	EventTaskCreated   = "task.created"
	EventTaskStarted   = "task.started"
	EventTaskCompleted = "task.completed"
	EventTaskFailed    = "task.failed"
	EventTaskCancelled = "task.cancelled"
)

// Event is one state change, as subscribers (the live websocket, webhooks)
// see it.
type Event struct {
	ID     uint64    `json:"id"` // increasing per process
	Type   string    `json:"type"`
	CallID string    `json:"call_id,omitempty"`
	Time   time.Time `json:"time"`
	Data   any       `json:"data,omitempty"`
}

// Bus fans events out to subscribers without ever blocking the publisher:
// a subscriber that does not keep up loses events (counted) and is told so
// by Dropped, rather than slowing a call.
type Bus struct {
	seq  atomic.Uint64
	mu   sync.RWMutex
	subs map[*Subscription]struct{}
}

// NewBus returns an empty bus.
func NewBus() *Bus { return &Bus{subs: map[*Subscription]struct{}{}} }

// Subscription receives the events its filter accepts.
type Subscription struct {
	C       <-chan Event
	c       chan Event
	filter  func(Event) bool
	dropped atomic.Uint64
	bus     *Bus
	once    sync.Once
}

// Subscribe registers a subscriber with a buffer of size events; filter nil
// accepts everything. Close it when done.
func (b *Bus) Subscribe(size int, filter func(Event) bool) *Subscription {
	if size <= 0 {
		size = 256
	}
	c := make(chan Event, size)
	s := &Subscription{C: c, c: c, filter: filter, bus: b}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Dropped is how many events this subscriber missed by falling behind.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close unsubscribes and closes C.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.bus.mu.Lock()
		delete(s.bus.subs, s)
		s.bus.mu.Unlock()
		close(s.c)
	})
}

// Publish stamps and delivers an event; it never blocks.
func (b *Bus) Publish(typ, callID string, data any) {
	if b == nil {
		return
	}
	ev := Event{ID: b.seq.Add(1), Type: typ, CallID: callID, Time: time.Now().UTC(), Data: data}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for s := range b.subs {
		if s.filter != nil && !s.filter(ev) {
			continue
		}
		select {
		case s.c <- ev:
		default:
			s.dropped.Add(1)
		}
	}
}

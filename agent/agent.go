// Package agent will run one AI conversation on a call: turn-taking,
// barge-in, tools and the transcript, with providers behind the small
// interfaces below. Only the interfaces exist so far; the clients and the
// session arrive with the agent issue.
package agent

import "context"

// Frame is 20 ms of 8 kHz mono 16-bit audio, the unit media hands us.
type Frame = []int16

// Transcript is a partial or final piece of what the caller said.
type Transcript struct {
	Text  string
	Final bool
}

// STT turns the caller's audio into transcripts as it arrives.
type STT interface {
	Stream(ctx context.Context, audio <-chan Frame) (<-chan Transcript, error)
}

// Message is one entry of the conversation sent to an LLM.
type Message struct {
	Role    string // system, user, assistant, tool
	Content string
}

// LLM streams a reply to a conversation, token by token.
type LLM interface {
	Stream(ctx context.Context, history []Message) (<-chan string, error)
}

// TTS turns streamed text into streamed 8 kHz audio.
type TTS interface {
	Stream(ctx context.Context, text <-chan string) (<-chan Frame, error)
}

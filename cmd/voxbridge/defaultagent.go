package main

import (
	"encoding/json"

	"github.com/voxbridge/voxbridge/agent"
	"github.com/voxbridge/voxbridge/flow"
)

// Environment that turns on the default agent: an OpenAI key, or the base
// URL of any OpenAI-compatible server (a local one may need no key).
const (
	envOpenAIKey  = "OPENAI_API_KEY"
	envOpenAIBase = "VOXBRIDGE_OPENAI_BASE_URL"
)

// defaultAgent is the agent `make run` hands calls to when an OpenAI-
// compatible provider is configured, so a softphone reaches a working voice
// agent with no other setup. ok is false when no provider is configured.
func defaultAgent(getenv func(string) string) (agent.Definition, bool) {
	key, base := getenv(envOpenAIKey), getenv(envOpenAIBase)
	if key == "" && base == "" {
		return agent.Definition{}, false
	}
	p := func(model, voice string) *agent.ProviderConfig {
		c := &agent.ProviderConfig{Provider: "openai", BaseURL: base, Model: model, Voice: voice}
		if key != "" {
			c.APIKeyEnv = envOpenAIKey
		}
		return c
	}
	return agent.Definition{
		ID:              "default",
		Name:            "Default assistant",
		SystemPrompt:    "You are a friendly voice assistant answering a phone call. Keep every answer to one or two short sentences, and speak naturally: no lists, no markdown.",
		StartingMessage: "Hello! This is the voxbridge assistant. How can I help you?",
		STT:             p("whisper-1", ""),
		LLM:             p("gpt-4o-mini", ""),
		TTS:             p("tts-1", "alloy"),
		Tools:           []string{"end_call"},
	}, true
}

// defaultAgentFlow answers and hands the call to the default agent.
func defaultAgentFlow() *flow.Flow {
	return &flow.Flow{ID: "default-agent", Name: "default agent", Actions: []flow.Action{
		{ID: "answer", Type: "answer"},
		{ID: "agent", Type: "ai_talk", Option: json.RawMessage(`{"agent_id":"default"}`)},
		{ID: "hangup", Type: "hangup"},
	}}
}

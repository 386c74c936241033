package flow

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/voxbridge/voxbridge/agent"
)

// TalkOption speaks text with an agent's text-to-speech voice.
type TalkOption struct {
	Text string `json:"text"` // may use ${variables}
	// AgentID names the agent whose TTS provider and voice speak (its
	// definition holds the provider settings and keys).
	AgentID  string `json:"agent_id"`
	Voice    string `json:"voice,omitempty"`    // overrides the agent's voice
	Language string `json:"language,omitempty"` // overrides the agent's language
	// Barge is none (default) or dtmf: a key stops the speech and is kept
	// for the next digits_receive.
	Barge string `json:"barge,omitempty"`
}

// maxTalkText bounds one talk action's text.
const maxTalkText = 4096

// talkTimeout bounds rendering and playing one text.
const talkTimeout = 2 * time.Minute

func init() { actionTypes["talk"] = define(compileTalk) }

func compileTalk(o *TalkOption) (step, error) {
	if strings.TrimSpace(o.Text) == "" {
		return step{}, badField("text", "required")
	}
	if len(o.Text) > maxTalkText {
		return step{}, badField("text", "longer than %d bytes", maxTalkText)
	}
	if o.AgentID == "" {
		return step{}, badField("agent_id", "required: the agent whose TTS speaks")
	}
	barge, err := checkBarge(o.Barge)
	if err != nil {
		return step{}, err
	}
	return seq(talkTimeout, func(ctx context.Context, r *run) (string, error) {
		return "", r.c.talk(ctx, o, barge)
	}), nil
}

// talk renders text (once per text, voice and provider: the cache keeps
// prompts every call says) and plays it.
func (c *Call) talk(ctx context.Context, o *TalkOption, barge string) error {
	if !c.answered.Load() {
		return errNotAnswered
	}
	pcm, err := c.talkAudio(ctx, o)
	if err != nil {
		return err
	}
	_, err = c.playBarge(ctx, pcm, barge)
	return err
}

// talkAudio renders o's text with its agent's voice, through the cache.
func (c *Call) talkAudio(ctx context.Context, o *TalkOption) ([]int16, error) {
	id := c.expand(o.AgentID)
	def, ok := c.ct.cfg.Agents.Get(id)
	if !ok {
		return nil, fmt.Errorf("agent %q not found", id)
	}
	if def.TTS == nil {
		return nil, fmt.Errorf("agent %q has no tts provider", id)
	}
	text := c.expand(o.Text)
	voice, lang := def.Voice, def.Language
	if def.TTS.Voice != "" && voice == "" {
		voice = def.TTS.Voice
	}
	if o.Voice != "" {
		voice = o.Voice
	}
	if o.Language != "" {
		lang = o.Language
	}
	key := agent.PhraseKey(def.TTS, text, voice, lang)
	pcm, ok := agent.DefaultCache.Get(key)
	if !ok {
		p, err := c.ct.providersFor(agent.Definition{TTS: def.TTS})
		if err != nil {
			return nil, fmt.Errorf("talk: %w", err)
		}
		if pcm, err = render(ctx, p.TTS, text, voice, lang); err != nil {
			return nil, fmt.Errorf("talk: %w", err)
		}
		agent.DefaultCache.Put(key, pcm)
	}
	return pcm, nil
}

// render synthesises text in full.
func render(ctx context.Context, tts agent.TTS, text, voice, lang string) ([]int16, error) {
	st, err := tts.Start(ctx, agent.TTSOptions{Voice: voice, Language: lang})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if err := st.WriteText(text); err != nil {
		return nil, err
	}
	if err := st.Flush(); err != nil {
		return nil, err
	}
	var pcm []int16
	for {
		select {
		case ch, ok := <-st.Audio():
			if !ok {
				return pcm, nil
			}
			if ch.Err != nil {
				return nil, ch.Err
			}
			pcm = append(pcm, ch.PCM...)
			if ch.Final {
				return pcm, nil
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

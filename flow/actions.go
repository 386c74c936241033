package flow

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/store"
)

// executor runs one decoded action on a call. It blocks until the action is
// finished or the call's context ends.
type executor func(ctx context.Context, c *Call) error

// actionTypes maps each action type to the decoder of its typed option. A
// decoder validates the option and returns the executor that runs it, so no
// type can be declared without both.
var actionTypes = map[string]func(raw json.RawMessage) (executor, error){
	"answer": func(raw json.RawMessage) (executor, error) {
		if err := decodeOption(raw, &struct{}{}); err != nil {
			return nil, err
		}
		return func(ctx context.Context, c *Call) error { return c.answer(ctx) }, nil
	},
	"play": func(raw json.RawMessage) (executor, error) {
		var o PlayOption
		if err := decodeOption(raw, &o); err != nil {
			return nil, err
		}
		audio, err := loadPlay(o)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, c *Call) error { return c.play(ctx, audio) }, nil
	},
	"echo": func(raw json.RawMessage) (executor, error) {
		var o EchoOption
		if err := decodeOption(raw, &o); err != nil {
			return nil, err
		}
		if o.DurationMS < 0 {
			return nil, errors.New("option.duration_ms: must not be negative")
		}
		d := time.Duration(o.DurationMS) * time.Millisecond
		if d == 0 {
			d = DefaultEcho
		}
		endOnDTMF := o.EndOnDTMF == nil || *o.EndOnDTMF
		return func(ctx context.Context, c *Call) error { return c.echo(ctx, d, endOnDTMF) }, nil
	},
	"sleep": func(raw json.RawMessage) (executor, error) {
		var o SleepOption
		if err := decodeOption(raw, &o); err != nil {
			return nil, err
		}
		d := time.Duration(o.DurationMS) * time.Millisecond
		if o.DurationMS <= 0 || d > maxSleep {
			return nil, fmt.Errorf("option.duration_ms: must be between 1 and %d", maxSleep.Milliseconds())
		}
		return func(ctx context.Context, c *Call) error { return sleep(ctx, d) }, nil
	},
	"hangup": func(raw json.RawMessage) (executor, error) {
		var o HangupOption
		if err := decodeOption(raw, &o); err != nil {
			return nil, err
		}
		reason := store.ReasonNormal
		if o.Reason != "" {
			reason = store.HangupReason(o.Reason)
			if !reason.Valid() {
				return nil, fmt.Errorf("option.reason: unknown hangup reason %q", o.Reason)
			}
		}
		return func(ctx context.Context, c *Call) error { return c.hangup(reason) }, nil
	},
}

func decodeAction(a Action) (executor, error) {
	dec, ok := actionTypes[a.Type]
	if !ok {
		return nil, fmt.Errorf("type: unknown action type %q", a.Type)
	}
	return dec(a.Option)
}

// decodeOption decodes strictly: unknown fields are errors, not silently
// ignored options.
func decodeOption(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("option: %w", err)
	}
	if d.More() {
		return errors.New("option: trailing data")
	}
	return nil
}

//go:embed prompts/*.wav
var promptFS embed.FS

// Prompt returns an embedded prompt's audio (8 kHz mono PCM).
func Prompt(name string) ([]int16, error) {
	f, err := promptFS.Open("prompts/" + name + ".wav")
	if err != nil {
		return nil, fmt.Errorf("prompt %q: not found", name)
	}
	defer f.Close()
	pcm, err := media.ReadWAV(f)
	if err != nil {
		return nil, fmt.Errorf("prompt %q: %w", name, err)
	}
	return pcm, nil
}

// loadPlay reads a play action's audio once, when the flow is validated, so
// a missing file is a flow error rather than dead air on a live call.
func loadPlay(o PlayOption) ([]int16, error) {
	if (o.Prompt == "") == (len(o.Files) == 0) {
		return nil, errors.New("option: exactly one of prompt or files is required")
	}
	if o.Prompt != "" {
		pcm, err := Prompt(o.Prompt)
		if err != nil {
			return nil, fmt.Errorf("option.prompt: %w", err)
		}
		return pcm, nil
	}
	var all []int16
	for i, path := range o.Files {
		pcm, err := media.ReadWAVFile(path)
		if err != nil {
			return nil, fmt.Errorf("option.files[%d]: %w", i, err)
		}
		all = append(all, pcm...)
	}
	return all, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

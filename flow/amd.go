package flow

import (
	"context"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/media/vad"
	"github.com/voxbridge/voxbridge/store"
)

// Answering-machine detection results, in ${call.amd}.
const (
	AMDHuman   = "human"
	AMDMachine = "machine"
	AMDUnknown = "unknown"
)

// What to do when amd hears a machine.
const (
	OnMachineContinue = "continue"
	OnMachineHangup   = "hangup"
)

// AMD thresholds. A person answers with a short "hello?" and waits; a
// machine talks on ("you have reached ... leave a message") or beeps.
const (
	amdMaxHumanGreeting = 2500 * time.Millisecond // longer is a machine
	amdGreetingEnd      = 800 * time.Millisecond  // silence that ends a greeting
	amdBeepHz           = 1000
	amdBeepLevel        = 0.2                    // media.ToneLevel of a clean beep frame
	amdBeepMin          = 100 * time.Millisecond // a beep lasts at least this long
)

// AMDOption listens to the start of an answered call and sets ${call.amd}
// to human, machine or unknown (nothing conclusive before the timeout).
type AMDOption struct {
	TimeoutMS int    `json:"timeout_ms,omitempty"` // default 5000
	OnMachine string `json:"on_machine,omitempty"` // continue (default) or hangup
}

func init() { actionTypes["amd"] = define(compileAMD) }

func compileAMD(o *AMDOption) (step, error) {
	timeout, err := msOption("timeout_ms", o.TimeoutMS, 5000, 1000, 60000)
	if err != nil {
		return step{}, err
	}
	switch o.OnMachine {
	case "", OnMachineContinue, OnMachineHangup:
	default:
		return step{}, badField("on_machine", "must be continue or hangup, not %q", o.OnMachine)
	}
	return seq(timeout+5*time.Second, func(ctx context.Context, r *run) (string, error) {
		res, err := r.c.detectMachine(ctx, timeout)
		r.c.setVar(VarCallAMD, res)
		if err != nil {
			return "", err
		}
		if res == AMDMachine && o.OnMachine == OnMachineHangup {
			if err := r.c.hangup(store.ReasonNormal); err != nil {
				return "", err
			}
			return "", errStop
		}
		return "", nil
	}), nil
}

// detectMachine classifies the far side from its first words: a greeting
// that ends within amdMaxHumanGreeting is a person, a longer one or a
// beep is a machine, and no speech before the timeout is unknown.
func (c *Call) detectMachine(ctx context.Context, timeout time.Duration) (string, error) {
	if c.stream == nil {
		return AMDUnknown, errNotAnswered
	}
	frames := c.stream.Frames()
	drainFrames(frames) // audio from before this action is not the greeting
	det := vad.New(vad.Config{})
	t := time.NewTimer(timeout)
	defer t.Stop()
	var heard, greeting, quiet, beep time.Duration // counted in frames of audio
	speaking := false
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				return AMDUnknown, nil
			}
			heard += media.FrameDuration
			if media.ToneLevel(f, amdBeepHz) > amdBeepLevel {
				if beep += media.FrameDuration; beep >= amdBeepMin {
					return AMDMachine, nil
				}
			} else {
				beep = 0
			}
			det.Process(f)
			switch {
			case det.Speaking():
				speaking, quiet = true, 0
			case speaking:
				quiet += media.FrameDuration
			}
			if speaking {
				greeting += media.FrameDuration
				if greeting-quiet > amdMaxHumanGreeting {
					return AMDMachine, nil
				}
				if quiet >= amdGreetingEnd {
					return AMDHuman, nil
				}
			}
		case <-t.C:
			c.log.Info("amd: no decision", "heard", heard, "greeting", greeting)
			return AMDUnknown, nil
		case <-ctx.Done():
			return AMDUnknown, ctx.Err()
		}
	}
}

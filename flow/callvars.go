package flow

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/voxbridge/voxbridge/store"
)

// maxWarnings bounds the warnings kept on a call record.
const maxWarnings = 50

func (c *Call) getVar(k string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.variables[k]
	return v, ok
}

// setVar sets a variable, within the bounds every stored call keeps.
func (c *Call) setVar(k, v string) {
	if len(v) > maxVarValue {
		v = v[:maxVarValue]
	}
	c.mu.Lock()
	_, exists := c.variables[k]
	full := !exists && len(c.variables) >= maxVars
	if !full {
		c.variables[k] = v
	}
	c.mu.Unlock()
	if full {
		c.warn(fmt.Sprintf("variable %s not set: more than %d variables", k, maxVars))
	}
}

// vars returns a copy of the call's variables.
func (c *Call) vars() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.variables)
}

// expand substitutes the call's variables in s; an unknown one becomes ""
// and a warning on the call's record.
func (c *Call) expand(s string) string {
	return expand(s, c.getVar, func(name string) { c.warn("unknown variable ${" + name + "}") })
}

// warn notes something that went wrong without ending the call.
func (c *Call) warn(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.rec.Warnings {
		if w == msg {
			return
		}
	}
	if len(c.rec.Warnings) < maxWarnings {
		c.rec.Warnings = append(c.rec.Warnings, msg)
	}
}

// recordAction stores one executed action (and any warning its error makes).
func (c *Call) recordAction(a store.ActionRun) {
	if a.Error != "" {
		c.warn(fmt.Sprintf("action %s (%s): %s", a.ActionID, a.Type, a.Error))
	}
	c.ct.cfg.Store.QueueActionRun(&a)
	c.publish(EventActionExecuted, a)
}

// playBarge plays pcm; with barge dtmf a key stops it (the key stays queued
// for the next digits_receive). stopped reports a barge.
func (c *Call) playBarge(ctx context.Context, pcm []int16, barge string) (stopped bool, err error) {
	if c.stream == nil {
		return false, errNotAnswered
	}
	var keys <-chan struct{}
	if barge == BargeDTMF {
		// A key typed ahead skips the prompt, as callers who know the menu
		// expect; a stale signal for a key already consumed does not.
		select {
		case <-c.keyPressed:
		default:
		}
		if len(c.digits) > 0 {
			return true, nil
		}
		keys = c.keyPressed
	}
	done := c.stream.Enqueue(pcm)
	select {
	case <-done:
		return false, nil
	case <-keys:
		c.stream.Flush()
		return true, nil
	case <-ctx.Done():
		c.stream.Flush()
		return false, ctx.Err()
	}
}

// collectDigits reads up to max keys: the first within first, the others
// each within inter; a terminator ends input without being kept.
func (c *Call) collectDigits(ctx context.Context, max int, first, inter time.Duration, terminators string) (string, error) {
	var got strings.Builder
	t := time.NewTimer(first)
	defer t.Stop()
	for got.Len() < max {
		select {
		case d := <-c.digits:
			if strings.ContainsRune(terminators, d) {
				return got.String(), nil
			}
			got.WriteRune(d)
			t.Reset(inter)
		case <-t.C:
			return got.String(), nil
		case <-ctx.Done():
			return got.String(), ctx.Err()
		}
	}
	return got.String(), nil
}

// sendDigits sends RFC 4733 digits one after another.
func (c *Call) sendDigits(ctx context.Context, digits string, dur, gap time.Duration) error {
	if c.stream == nil {
		return errNotAnswered
	}
	for i, d := range digits {
		done, err := c.stream.SendDTMF(d, dur)
		if err != nil {
			return err
		}
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if i < len(digits)-1 {
			if err := sleep(ctx, gap); err != nil {
				return err
			}
		}
	}
	return nil
}

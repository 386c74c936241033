package flow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/voxbridge/voxbridge/media"
	"github.com/voxbridge/voxbridge/store"
)

// actionTypes maps each action type to the decoder of its typed option. A
// decoder validates the option and returns the step that runs it, so no
// type can be declared without both.
var actionTypes = map[string]func(raw json.RawMessage) (step, error){
	"answer":             define(func(o *struct{}) (step, error) { return seq(40*time.Second, answerStep), nil }),
	"hangup":             define(compileHangup),
	"sleep":              define(compileSleep),
	"echo":               define(compileEcho),
	"stop":               define(func(o *struct{}) (step, error) { return step{exec: stopStep, timeout: time.Second}, nil }),
	"play":               define(compilePlay),
	"beep":               define(compileBeep),
	"digits_receive":     define(compileDigitsReceive),
	"digits_send":        define(compileDigitsSend),
	"branch":             define(compileBranch),
	"goto":               define(compileGoto),
	"condition_variable": define(compileConditionVariable),
	"condition_datetime": define(compileConditionDatetime),
	"variable_set":       define(compileVariableSet),
	"webhook_send":       define(compileWebhookSend),
}

// fetch_flow compiles flows itself (and ai_talk and the other bridging
// actions may, through a REFER to one of our numbers), so they join the
// table at init to break the initialization cycle.
func init() { actionTypes["fetch_flow"] = define(compileFetchFlow) }

// ActionTypes lists every action type, sorted.
func ActionTypes() []string { return slices.Sorted(maps.Keys(actionTypes)) }

// define decodes an action's option strictly into O, then checks it.
func define[O any](check func(o *O) (step, error)) func(json.RawMessage) (step, error) {
	return func(raw json.RawMessage) (step, error) {
		var o O
		if err := decodeOption(raw, &o); err != nil {
			return step{}, err
		}
		return check(&o)
	}
}

// seq is a step that continues at its successor.
func seq(timeout time.Duration, exec executor) step {
	return step{exec: exec, timeout: timeout, fallsThrough: true}
}

var unknownFieldRE = regexp.MustCompile(`unknown field "([^"]*)"`)

// decodeOption decodes strictly: unknown fields are errors, not silently
// ignored options. Errors name the field.
func decodeOption(raw json.RawMessage, v any) error {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(trimmed))
	d.DisallowUnknownFields()
	err := d.Decode(v)
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		return badField(te.Field, "must be %s, not %s", te.Type.String(), te.Value)
	case err != nil && unknownFieldRE.MatchString(err.Error()):
		return badField(unknownFieldRE.FindStringSubmatch(err.Error())[1], "unknown field")
	case err != nil:
		return fmt.Errorf("not a JSON object: %w", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("trailing data after the option object")
	}
	return nil
}

// ---- call control ----

func answerStep(ctx context.Context, r *run) (string, error) { return "", r.c.answer(ctx) }

func stopStep(context.Context, *run) (string, error) { return "", errStop }

// HangupOption ends the call.
type HangupOption struct {
	Reason string `json:"reason,omitempty"`
}

func compileHangup(o *HangupOption) (step, error) {
	reason := store.ReasonNormal
	if o.Reason != "" {
		reason = store.HangupReason(o.Reason)
		if !reason.Valid() {
			return step{}, badField("reason", "unknown hangup reason %q", o.Reason)
		}
	}
	return step{timeout: 10 * time.Second, exec: func(ctx context.Context, r *run) (string, error) {
		if err := r.c.hangup(reason); err != nil {
			return "", err
		}
		return "", errStop
	}}, nil
}

// SleepOption waits.
type SleepOption struct {
	DurationMS int `json:"duration_ms"`
}

// maxSleep bounds a sleep action so a typo cannot park a call for days.
const maxSleep = time.Hour

func compileSleep(o *SleepOption) (step, error) {
	d := time.Duration(o.DurationMS) * time.Millisecond
	if o.DurationMS <= 0 || d > maxSleep {
		return step{}, badField("duration_ms", "must be between 1 and %d", maxSleep.Milliseconds())
	}
	return seq(d+time.Second, func(ctx context.Context, r *run) (string, error) { return "", sleep(ctx, d) }), nil
}

// EchoOption sends the caller's audio back.
type EchoOption struct {
	// DurationMS bounds the echo; 0 means DefaultEcho.
	DurationMS int `json:"duration_ms,omitempty"`
	// EndOnDTMF stops the echo on any key (default true).
	EndOnDTMF *bool `json:"end_on_dtmf,omitempty"`
}

// DefaultEcho is how long an echo action runs without an explicit duration.
const DefaultEcho = 60 * time.Second

func compileEcho(o *EchoOption) (step, error) {
	if o.DurationMS < 0 || time.Duration(o.DurationMS)*time.Millisecond > maxSleep {
		return step{}, badField("duration_ms", "must be between 0 and %d", maxSleep.Milliseconds())
	}
	d := time.Duration(o.DurationMS) * time.Millisecond
	if d == 0 {
		d = DefaultEcho
	}
	endOnDTMF := o.EndOnDTMF == nil || *o.EndOnDTMF
	return seq(d+time.Second, func(ctx context.Context, r *run) (string, error) {
		return "", r.c.echo(ctx, d, endOnDTMF)
	}), nil
}

// ---- audio ----

// Barge modes: what may cut a prompt short.
const (
	BargeNone = "none"
	BargeDTMF = "dtmf"
)

// PlayOption plays audio: an embedded prompt or WAV files/URLs.
type PlayOption struct {
	// Prompt names an embedded prompt ("greeting", "goodbye").
	Prompt string `json:"prompt,omitempty"`
	// Files are WAV file paths or http(s) URLs, played in order. URLs are
	// fetched once and cached.
	Files []string `json:"files,omitempty"`
	// LoopCount plays the whole list this many times (default 1).
	LoopCount int `json:"loop_count,omitempty"`
	// Barge is none (default) or dtmf: a key stops the prompt and is kept
	// for the next digits_receive.
	Barge string `json:"barge,omitempty"`
}

const maxLoops = 100

func compilePlay(o *PlayOption) (step, error) {
	if (o.Prompt == "") == (len(o.Files) == 0) {
		return step{}, badField("prompt", "exactly one of prompt or files is required")
	}
	if o.Prompt != "" {
		if _, err := Prompt(o.Prompt); err != nil {
			return step{}, badField("prompt", "%v", err)
		}
	}
	for i, f := range o.Files {
		if err := checkAudioSource(f); err != nil {
			return step{}, badField(fmt.Sprintf("files[%d]", i), "%v", err)
		}
	}
	if o.LoopCount < 0 || o.LoopCount > maxLoops {
		return step{}, badField("loop_count", "must be between 0 and %d", maxLoops)
	}
	barge, err := checkBarge(o.Barge)
	if err != nil {
		return step{}, err
	}
	loops := max(o.LoopCount, 1)
	return seq(defaultActionTimeout, func(ctx context.Context, r *run) (string, error) {
		var pcm []int16
		if o.Prompt != "" {
			p, err := Prompt(o.Prompt)
			if err != nil {
				return "", err
			}
			pcm = p
		} else {
			for _, f := range o.Files {
				p, err := r.c.ct.audio.load(ctx, r.c.expand(f))
				if err != nil {
					return "", err
				}
				pcm = append(pcm, p...)
			}
		}
		for range loops {
			if stopped, err := r.c.playBarge(ctx, pcm, barge); stopped || err != nil {
				return "", err
			}
		}
		return "", nil
	}), nil
}

func checkBarge(b string) (string, error) {
	switch b {
	case "", BargeNone:
		return BargeNone, nil
	case BargeDTMF:
		return b, nil
	}
	return "", badField("barge", "must be none or dtmf, not %q", b)
}

// checkAudioSource catches a missing file at save time; paths with
// variables and URLs are checked when they play.
func checkAudioSource(f string) error {
	switch {
	case f == "":
		return errors.New("empty")
	case strings.HasPrefix(f, "http://"), strings.HasPrefix(f, "https://"), strings.Contains(f, "${"):
		return nil
	}
	if _, err := os.Stat(f); err != nil {
		return fmt.Errorf("cannot read %s: %w", f, err)
	}
	return nil
}

// BeepOption plays a tone (a voicemail beep).
type BeepOption struct {
	FrequencyHz int `json:"frequency_hz,omitempty"` // default 1000
	DurationMS  int `json:"duration_ms,omitempty"`  // default 300
}

func compileBeep(o *BeepOption) (step, error) {
	freq, dur := 1000, 300
	if o.FrequencyHz != 0 {
		if o.FrequencyHz < 100 || o.FrequencyHz > 3400 {
			return step{}, badField("frequency_hz", "must be between 100 and 3400 (telephone band)")
		}
		freq = o.FrequencyHz
	}
	if o.DurationMS != 0 {
		if o.DurationMS < 20 || o.DurationMS > 5000 {
			return step{}, badField("duration_ms", "must be between 20 and 5000")
		}
		dur = o.DurationMS
	}
	tone := media.Tone(float64(freq), time.Duration(dur)*time.Millisecond, 0.3)
	return seq(time.Duration(dur)*time.Millisecond+5*time.Second, func(ctx context.Context, r *run) (string, error) {
		return "", r.c.play(ctx, tone)
	}), nil
}

// ---- DTMF ----

// DigitsReceiveOption collects keys the caller presses, including ones
// pressed during earlier prompts (type-ahead).
type DigitsReceiveOption struct {
	MaxDigits           int    `json:"max_digits,omitempty"`             // default 1
	TimeoutMS           int    `json:"timeout_ms,omitempty"`             // for the first key, default 5000
	InterDigitTimeoutMS int    `json:"inter_digit_timeout_ms,omitempty"` // default 3000
	Terminators         string `json:"terminators,omitempty"`            // keys that end input, e.g. "#*"
	Variable            string `json:"variable,omitempty"`               // also stored there; call.digits always
}

const validDigits = "0123456789*#ABCD"

func compileDigitsReceive(o *DigitsReceiveOption) (step, error) {
	maxDigits := 1
	if o.MaxDigits != 0 {
		if o.MaxDigits < 1 || o.MaxDigits > 64 {
			return step{}, badField("max_digits", "must be between 1 and 64")
		}
		maxDigits = o.MaxDigits
	}
	first, err := msOption("timeout_ms", o.TimeoutMS, 5000, 100, 600000)
	if err != nil {
		return step{}, err
	}
	inter, err := msOption("inter_digit_timeout_ms", o.InterDigitTimeoutMS, 3000, 100, 60000)
	if err != nil {
		return step{}, err
	}
	for _, c := range o.Terminators {
		if !strings.ContainsRune(validDigits, c) {
			return step{}, badField("terminators", "%q is not a DTMF key", c)
		}
	}
	if err := checkVarName("variable", o.Variable, true); err != nil {
		return step{}, err
	}
	timeout := first + time.Duration(maxDigits)*inter + 5*time.Second
	return seq(timeout, func(ctx context.Context, r *run) (string, error) {
		got, err := r.c.collectDigits(ctx, maxDigits, first, inter, o.Terminators)
		r.c.setVar(VarCallDigits, got)
		if o.Variable != "" {
			r.c.setVar(o.Variable, got)
		}
		return "", err
	}), nil
}

func msOption(field string, v, def, lo, hi int) (time.Duration, error) {
	if v == 0 {
		v = def
	}
	if v < lo || v > hi {
		return 0, badField(field, "must be between %d and %d", lo, hi)
	}
	return time.Duration(v) * time.Millisecond, nil
}

// DigitsSendOption sends RFC 4733 digits to the caller.
type DigitsSendOption struct {
	Digits     string `json:"digits"`
	DurationMS int    `json:"duration_ms,omitempty"` // per digit, default 100
	IntervalMS int    `json:"interval_ms,omitempty"` // between digits, default 100
}

func compileDigitsSend(o *DigitsSendOption) (step, error) {
	if o.Digits == "" {
		return step{}, badField("digits", "required")
	}
	if !strings.Contains(o.Digits, "${") {
		if err := checkDigits(o.Digits); err != nil {
			return step{}, badField("digits", "%v", err)
		}
	}
	dur, err := msOption("duration_ms", o.DurationMS, 100, 100, 5000)
	if err != nil {
		return step{}, err
	}
	gap, err := msOption("interval_ms", o.IntervalMS, 100, 20, 5000)
	if err != nil {
		return step{}, err
	}
	return seq(2*time.Minute, func(ctx context.Context, r *run) (string, error) {
		digits := strings.ToUpper(r.c.expand(o.Digits))
		if err := checkDigits(digits); err != nil {
			return "", err
		}
		return "", r.c.sendDigits(ctx, digits, dur, gap)
	}), nil
}

func checkDigits(s string) error {
	if len(s) > 64 {
		return fmt.Errorf("more than 64 digits")
	}
	for _, c := range strings.ToUpper(s) {
		if !strings.ContainsRune(validDigits, c) {
			return fmt.Errorf("%q is not a DTMF key", c)
		}
	}
	return nil
}

// ---- control ----

// BranchOption jumps by a variable's value.
type BranchOption struct {
	Variable        string            `json:"variable,omitempty"` // default call.digits
	Targets         map[string]string `json:"targets"`            // value → action id
	DefaultTargetID string            `json:"default_target_id,omitempty"`
}

func compileBranch(o *BranchOption) (step, error) {
	if len(o.Targets) == 0 {
		return step{}, badField("targets", "required")
	}
	variable := o.Variable
	if variable == "" {
		variable = VarCallDigits
	}
	if err := checkVarName("variable", variable, false); err != nil {
		return step{}, err
	}
	st := step{timeout: 5 * time.Second, fallsThrough: o.DefaultTargetID == ""}
	for _, t := range o.Targets {
		st.jumps = append(st.jumps, t)
	}
	if o.DefaultTargetID != "" {
		st.jumps = append(st.jumps, o.DefaultTargetID)
	}
	st.exec = func(ctx context.Context, r *run) (string, error) {
		v, _ := r.c.getVar(variable)
		if t, ok := o.Targets[v]; ok {
			return t, nil
		}
		return o.DefaultTargetID, nil
	}
	return st, nil
}

// GotoOption jumps to an action, at most LoopCount times per call.
type GotoOption struct {
	TargetID  string `json:"target_id"`
	LoopCount int    `json:"loop_count"`
}

func compileGoto(o *GotoOption) (step, error) {
	if o.TargetID == "" {
		return step{}, badField("target_id", "required")
	}
	if o.LoopCount < 1 || o.LoopCount > DefaultMaxActions {
		return step{}, badField("loop_count", "must be between 1 and %d (a goto without a bound would loop forever)", DefaultMaxActions)
	}
	st := step{timeout: 5 * time.Second, fallsThrough: true, jumps: []string{o.TargetID}}
	st.exec = func(ctx context.Context, r *run) (string, error) {
		key := loopKey{flow: r.current.flow, index: r.currentIndex}
		if r.loops[key] >= o.LoopCount {
			return "", nil
		}
		r.loops[key]++
		return o.TargetID, nil
	}
	return st, nil
}

// Comparison operators of condition_variable.
var operators = map[string]bool{"==": true, "!=": true, "<": true, "<=": true, ">": true, ">=": true, "contains": true, "matches": true}

// ConditionVariableOption continues when the comparison holds, else jumps.
type ConditionVariableOption struct {
	Variable      string `json:"variable"`
	Operator      string `json:"operator"`
	Value         string `json:"value"`
	FalseTargetID string `json:"false_target_id"`
}

// maxPattern bounds a matches pattern (Go's regexp is linear-time, but a
// pattern still costs memory to compile).
const maxPattern = 1024

func compileConditionVariable(o *ConditionVariableOption) (step, error) {
	if err := checkVarName("variable", o.Variable, false); err != nil {
		return step{}, err
	}
	if !operators[o.Operator] {
		return step{}, badField("operator", "must be one of == != < <= > >= contains matches, not %q", o.Operator)
	}
	if o.FalseTargetID == "" {
		return step{}, badField("false_target_id", "required")
	}
	if o.Operator == "matches" && !strings.Contains(o.Value, "${") {
		if len(o.Value) > maxPattern {
			return step{}, badField("value", "pattern longer than %d", maxPattern)
		}
		if _, err := regexp.Compile(o.Value); err != nil {
			return step{}, badField("value", "bad pattern: %v", err)
		}
	}
	st := step{timeout: 5 * time.Second, fallsThrough: true, jumps: []string{o.FalseTargetID}}
	st.exec = func(ctx context.Context, r *run) (string, error) {
		v, _ := r.c.getVar(o.Variable)
		ok, err := compare(v, o.Operator, r.c.expand(o.Value))
		if err != nil {
			return "", err
		}
		if ok {
			return "", nil
		}
		return o.FalseTargetID, nil
	}
	return st, nil
}

// compare applies op; ordering operators compare numbers when both sides
// are numbers, else strings.
func compare(a, op, b string) (bool, error) {
	switch op {
	case "contains":
		return strings.Contains(a, b), nil
	case "matches":
		if len(b) > maxPattern {
			return false, fmt.Errorf("pattern longer than %d", maxPattern)
		}
		re, err := regexp.Compile(b)
		if err != nil {
			return false, fmt.Errorf("bad pattern: %w", err)
		}
		return re.MatchString(a), nil
	}
	cmp := strings.Compare(a, b)
	fa, errA := strconv.ParseFloat(strings.TrimSpace(a), 64)
	fb, errB := strconv.ParseFloat(strings.TrimSpace(b), 64)
	if errA == nil && errB == nil {
		switch {
		case fa < fb:
			cmp = -1
		case fa > fb:
			cmp = 1
		default:
			cmp = 0
		}
	}
	switch op {
	case "==":
		return cmp == 0, nil
	case "!=":
		return cmp != 0, nil
	case "<":
		return cmp < 0, nil
	case "<=":
		return cmp <= 0, nil
	case ">":
		return cmp > 0, nil
	case ">=":
		return cmp >= 0, nil
	}
	return false, fmt.Errorf("unknown operator %q", op)
}

// VariableSetOption sets a variable (the value may use other variables).
type VariableSetOption struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

func compileVariableSet(o *VariableSetOption) (step, error) {
	if err := checkVarName("key", o.Key, false); err != nil {
		return step{}, err
	}
	if len(o.Value) > maxVarValue {
		return step{}, badField("value", "longer than %d bytes", maxVarValue)
	}
	return seq(5*time.Second, func(ctx context.Context, r *run) (string, error) {
		r.c.setVar(o.Key, r.c.expand(o.Value))
		return "", nil
	}), nil
}

var varNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

func checkVarName(field, name string, optional bool) error {
	if name == "" && optional {
		return nil
	}
	if len(name) > 128 || !varNameRE.MatchString(name) {
		return badField(field, "%q is not a variable name (letters, digits, _ and dots)", name)
	}
	return nil
}

// FetchFlowOption runs another flow, then continues here.
type FetchFlowOption struct {
	FlowID string `json:"flow_id"`
}

func compileFetchFlow(o *FetchFlowOption) (step, error) {
	if o.FlowID == "" {
		return step{}, badField("flow_id", "required")
	}
	// No timeout of its own: the fetched flow's actions have theirs.
	return seq(-1, func(ctx context.Context, r *run) (string, error) {
		p, err := r.c.ct.lookup(ctx, r.c.expand(o.FlowID))
		if err != nil {
			return "", err
		}
		return "", r.runFlow(ctx, p)
	}), nil
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

package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Analysis is the post-call analysis: what the call was about, whether it
// achieved its goal, and the values extracted from it.
type Analysis struct {
	Summary string          `json:"summary,omitempty"`
	Success *bool           `json:"success,omitempty"`
	Fields  json.RawMessage `json:"fields,omitempty"`
	Error   string          `json:"error,omitempty"`
}

// Analyze runs the post-call analysis with one LLM call over the
// transcript. The model must answer with a JSON object; its fields are
// checked against pc.Fields (required keys, top-level types).
func Analyze(ctx context.Context, llm LLM, pc PostCall, transcript []Turn) (*Analysis, error) {
	var sys strings.Builder
	sys.WriteString("You analyse a finished phone call between an AI agent and a caller. ")
	sys.WriteString("Answer with one JSON object and nothing else. Its keys:\n")
	if pc.Summary {
		sys.WriteString(`- "summary": two or three sentences on what the call was about and how it ended.` + "\n")
	}
	if pc.SuccessCriteria != "" {
		sys.WriteString(`- "success": true or false, judged by: ` + pc.SuccessCriteria + "\n")
	}
	if len(pc.Fields) > 0 {
		sys.WriteString(`- "fields": an object matching this JSON Schema (use null for values the call did not give): ` + string(pc.Fields) + "\n")
	}
	var conv strings.Builder
	for _, t := range transcript {
		who := "caller"
		if t.Role == RoleAssistant {
			who = "agent"
		}
		text := t.Text
		if t.Interrupted {
			text += " [interrupted]"
		}
		if strings.TrimSpace(text) != "" {
			fmt.Fprintf(&conv, "%s: %s\n", who, text)
		}
		for _, tc := range t.ToolCalls {
			fmt.Fprintf(&conv, "[tool %s %s -> %s]\n", tc.Name, tc.Arguments, tc.Result)
		}
	}
	req := LLMRequest{Messages: []Message{
		{Role: RoleSystem, Content: sys.String()},
		{Role: RoleUser, Content: "Transcript:\n" + conv.String()},
	}}
	zero := 0.0
	req.Temperature = &zero
	events, err := llm.Stream(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("analysis: %w", err)
	}
	var out strings.Builder
	for ev := range events {
		if ev.Err != nil {
			return nil, fmt.Errorf("analysis: %w", ev.Err)
		}
		out.WriteString(ev.Text)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("analysis: %w", err)
	}
	return parseAnalysis(out.String(), pc)
}

// parseAnalysis extracts the JSON object from a model's answer (tolerating
// a code fence or words around it) and checks it.
func parseAnalysis(text string, pc PostCall) (*Analysis, error) {
	start, end := strings.IndexByte(text, '{'), strings.LastIndexByte(text, '}')
	if start < 0 || end < start {
		return nil, errors.New("analysis: the model's answer has no JSON object")
	}
	var raw struct {
		Summary string          `json:"summary"`
		Success *bool           `json:"success"`
		Fields  json.RawMessage `json:"fields"`
	}
	if err := json.Unmarshal([]byte(text[start:end+1]), &raw); err != nil {
		return nil, fmt.Errorf("analysis: the model's answer is not valid JSON: %w", err)
	}
	a := &Analysis{Summary: strings.TrimSpace(raw.Summary), Success: raw.Success}
	if pc.Summary && a.Summary == "" {
		return nil, errors.New("analysis: no summary in the model's answer")
	}
	if pc.SuccessCriteria != "" && a.Success == nil {
		return nil, errors.New("analysis: no success flag in the model's answer")
	}
	if len(pc.Fields) > 0 {
		if len(raw.Fields) == 0 || string(raw.Fields) == "null" {
			return nil, errors.New("analysis: no fields in the model's answer")
		}
		if err := checkSchema(json.RawMessage(pc.Fields), raw.Fields); err != nil {
			return nil, fmt.Errorf("analysis: fields: %w", err)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw.Fields); err != nil {
			return nil, err
		}
		a.Fields = buf.Bytes()
	}
	return a, nil
}

// checkSchema checks an object value against the parts of a JSON Schema
// that matter for extracted fields: it is an object, its required keys are
// there, and each property has its declared type (null always allowed).
func checkSchema(schema, value json.RawMessage) error {
	var sc struct {
		Properties map[string]struct {
			Type any `json:"type"`
		} `json:"properties"`
		Required []string `json:"required"`
	}
	if err := json.Unmarshal(schema, &sc); err != nil {
		return fmt.Errorf("bad schema: %w", err)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(value, &obj); err != nil || obj == nil {
		return errors.New("not a JSON object")
	}
	for _, k := range sc.Required {
		if _, ok := obj[k]; !ok {
			return fmt.Errorf("required field %q missing", k)
		}
	}
	for k, p := range sc.Properties {
		v, ok := obj[k]
		if !ok || string(v) == "null" || p.Type == nil {
			continue
		}
		var types []string
		switch t := p.Type.(type) {
		case string:
			types = []string{t}
		case []any:
			for _, x := range t {
				if s, ok := x.(string); ok {
					types = append(types, s)
				}
			}
		}
		if got := jsonType(v); !slices.Contains(types, got) && !(got == "integer" && slices.Contains(types, "number")) {
			return fmt.Errorf("field %q is %s, want %s", k, got, strings.Join(types, " or "))
		}
	}
	return nil
}

func jsonType(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "null"
	}
	switch v[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	if bytes.ContainsAny(v, ".eE") {
		return "number"
	}
	return "integer"
}

package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ToolCallRecord is a tool call and its outcome, as stored in the transcript.
type ToolCallRecord struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Arguments string    `json:"arguments"`
	Result    string    `json:"result"`          // what the model was told (JSON)
	Error     string    `json:"error,omitempty"` // set when the tool failed or was refused
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
}

// ToolDecls returns the tool declarations the model is given: the enabled
// built-ins (transfer_call enumerates only the allowed targets) and the
// HTTP tools.
func (d Definition) ToolDecls() []Tool {
	var out []Tool
	for _, name := range d.Tools {
		switch name {
		case ToolEndCall:
			out = append(out, Tool{
				Name:        ToolEndCall,
				Description: "End the call. Say goodbye first, in the same reply.",
				Parameters:  json.RawMessage(`{"type":"object","properties":{"reason":{"type":"string","description":"Why the call ends."}}}`),
			})
		case ToolTransferCall:
			names := make([]string, 0, len(d.TransferTargets))
			var desc strings.Builder
			desc.WriteString("Transfer the caller to one of the allowed targets:")
			for _, t := range d.TransferTargets {
				names = append(names, t.Name)
				fmt.Fprintf(&desc, " %s", t.Name)
				if t.Description != "" {
					fmt.Fprintf(&desc, " (%s)", t.Description)
				}
				desc.WriteByte(';')
			}
			desc.WriteString(" no other target is possible.")
			enum, _ := json.Marshal(names)
			props := `"target":{"type":"string","enum":` + string(enum) + `}`
			if slices.ContainsFunc(d.TransferTargets, func(t TransferTarget) bool { return t.Warm }) {
				// A warm transfer's target hears this before the caller.
				props += `,"summary":{"type":"string","description":"For the person taking the call, spoken before the caller joins: one or two sentences on who is calling and what they need."}`
			}
			out = append(out, Tool{
				Name:        ToolTransferCall,
				Description: desc.String(),
				Parameters:  json.RawMessage(`{"type":"object","properties":{` + props + `},"required":["target"]}`),
			})
		case ToolSendDTMF:
			out = append(out, Tool{
				Name:        ToolSendDTMF,
				Description: "Send DTMF tones (keypad presses) on the call, e.g. to navigate a phone menu.",
				Parameters:  json.RawMessage(`{"type":"object","properties":{"digits":{"type":"string","pattern":"^[0-9*#A-D]{1,32}$"}},"required":["digits"]}`),
			})
		case ToolSetVariable:
			out = append(out, Tool{
				Name:        ToolSetVariable,
				Description: "Store a value on the call for later steps, e.g. the caller's account number.",
				Parameters:  json.RawMessage(`{"type":"object","properties":{"name":{"type":"string"},"value":{"type":"string"}},"required":["name","value"]}`),
			})
		}
	}
	for _, t := range d.HTTPTools {
		params := json.RawMessage(t.Parameters)
		if len(params) == 0 {
			params = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		out = append(out, Tool{Name: t.Name, Description: t.Description, Parameters: params})
	}
	return out
}

func (d Definition) httpTool(name string) (HTTPTool, bool) {
	for _, t := range d.HTTPTools {
		if t.Name == name {
			return t, true
		}
	}
	return HTTPTool{}, false
}

var (
	dtmfDigitsRE = regexp.MustCompile(`^[0-9*#A-D]{1,32}$`)
	varNameRE    = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_.-]{0,63}$`)
)

// toolResult renders a tool outcome for the model.
func toolResult(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return `{"error":"unrepresentable result"}`
	}
	return string(b)
}

func toolError(format string, args ...any) string {
	return toolResult(map[string]string{"error": fmt.Sprintf(format, args...)})
}

// parseArgs decodes a tool call's JSON arguments into v; empty means {}.
func parseArgs(args string, v any) error {
	if strings.TrimSpace(args) == "" {
		args = "{}"
	}
	if err := json.Unmarshal([]byte(args), v); err != nil {
		return fmt.Errorf("arguments are not a JSON object: %v", err)
	}
	return nil
}

// maxToolReply bounds what an HTTP tool may return to the model.
const maxToolReply = 64 << 10

// callHTTPTool runs an operator-defined HTTP tool and returns the JSON the
// model sees; failures come back as {"error": ...} so the model can tell the
// caller, and as err for the transcript.
func callHTTPTool(ctx context.Context, client *http.Client, t HTTPTool, args string, vars map[string]string) (string, error) {
	var obj map[string]any
	if err := parseArgs(args, &obj); err != nil {
		return toolError("%v", err), err
	}
	timeout := time.Duration(t.TimeoutMS) * time.Millisecond
	if timeout <= 0 {
		timeout = DefaultHTTPToolTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	rawURL, _ := Render(t.URL, vars)
	u, err := url.Parse(rawURL)
	if err != nil {
		err = fmt.Errorf("tool %s: bad url: %w", t.Name, err)
		return toolError("the tool is misconfigured"), err
	}
	method := strings.ToUpper(t.Method)
	if method == "" {
		method = http.MethodPost
	}
	var body io.Reader
	if method == http.MethodGet || method == http.MethodDelete {
		q := u.Query()
		for k, v := range obj {
			switch v := v.(type) {
			case string:
				q.Set(k, v)
			case nil:
			default:
				b, _ := json.Marshal(v)
				q.Set(k, string(b))
			}
		}
		u.RawQuery = q.Encode()
	} else {
		b, _ := json.Marshal(obj)
		if obj == nil {
			b = []byte("{}")
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		err = fmt.Errorf("tool %s: %w", t.Name, err)
		return toolError("the tool is misconfigured"), err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range t.Headers {
		v, _ := Render(v, vars)
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("tool %s: no reply within %v", t.Name, timeout)
			return toolError("the service did not answer in time"), err
		}
		err = fmt.Errorf("tool %s: %w", t.Name, err)
		return toolError("the service could not be reached"), err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxToolReply+1))
	if err != nil {
		err = fmt.Errorf("tool %s: reading reply: %w", t.Name, err)
		return toolError("the service's reply was cut off"), err
	}
	if len(data) > maxToolReply {
		err = fmt.Errorf("tool %s: reply larger than %d bytes", t.Name, maxToolReply)
		return toolError("the service's reply was too large"), err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		err = fmt.Errorf("tool %s: HTTP %d", t.Name, resp.StatusCode)
		detail := strings.TrimSpace(string(data))
		if len(detail) > 500 {
			detail = detail[:500]
		}
		return toolResult(map[string]any{"error": fmt.Sprintf("the service answered HTTP %d", resp.StatusCode), "status": resp.StatusCode, "body": detail}), err
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return `{"ok":true}`, nil
	}
	if !json.Valid(data) {
		// Not JSON: hand the text over as a JSON string.
		return toolResult(map[string]string{"result": string(data)}), nil
	}
	return string(data), nil
}

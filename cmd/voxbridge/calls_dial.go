package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/voxbridge/voxbridge/store"
)

// varsFlag collects repeated --var name=value.
type varsFlag map[string]string

func (v varsFlag) String() string { return fmt.Sprint(map[string]string(v)) }

func (v varsFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("want name=value, not %q", s)
	}
	v[name] = value
	return nil
}

// callsDial serves "voxbridge calls dial": POST /v1/calls. It prints the
// new call's id as soon as the server accepted it; the dialing goes on in
// the server (follow it with "voxbridge calls get ID").
func callsDial(args []string, env cliEnv) error {
	fs := flag.NewFlagSet("calls dial", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	client := apiFlags(fs, env)
	to := fs.String("to", "", "who to call: an extension, a phone number (E.164 or digits) or a sip: URI (required)")
	flowID := fs.String("flow", "", "the flow to run once answered")
	agentID := fs.String("agent", "", "the agent to hand the answered call to")
	from := fs.String("from", "", "caller id user shown to the callee")
	callerName := fs.String("caller-name", "", "caller display name")
	trunk := fs.String("trunk", "", "only this trunk (by name), for a phone number")
	record := fs.Bool("record", false, "record the call")
	maxDuration := fs.Int("max-duration", 0, "end the call this many seconds after the answer (0: no limit)")
	ringTimeout := fs.Int("ring-timeout", 0, "seconds to ring (0: the server's 30)")
	vars := varsFlag{}
	fs.Var(vars, "var", "a variable name=value for the flow or agent (repeatable)")
	asJSON := fs.Bool("json", false, "print the API's answer as JSON")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *to == "" {
		return errors.New("usage: voxbridge calls dial --to X [--flow ID | --agent ID] [--from N] [--json]")
	}
	if (*flowID == "") == (*agentID == "") {
		return errors.New("calls dial: give exactly one of --flow and --agent")
	}
	c, err := client()
	if err != nil {
		return err
	}
	body := map[string]any{"to": *to, "record": *record, "max_duration_s": *maxDuration, "ring_timeout_s": *ringTimeout}
	for k, v := range map[string]string{"flow_id": *flowID, "agent_id": *agentID, "from": *from, "caller_name": *callerName, "trunk": *trunk} {
		if v != "" {
			body[k] = v
		}
	}
	if len(vars) > 0 {
		body["variables"] = map[string]string(vars)
	}
	var call store.Call
	if err := c.do("POST", "/v1/calls", body, &call); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.stdout, call)
	}
	fmt.Fprintf(env.stdout, "%s\t%s\t%s\n", call.ID, call.Status, call.Destination)
	return nil
}

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

// callFlags are the flags that describe an outbound call: calls dial and
// tasks create take the same ones.
type callFlags struct {
	to, flowID, agentID, from, callerName, trunk, context *string
	record                                                *bool
	maxDuration, ringTimeout                              *int
	vars                                                  varsFlag
}

func addCallFlags(fs *flag.FlagSet) *callFlags {
	f := &callFlags{
		to:          fs.String("to", "", "who to call: an extension, a phone number (E.164 or digits) or a sip: URI (required)"),
		flowID:      fs.String("flow", "", "the flow to run once answered"),
		agentID:     fs.String("agent", "", "the agent to hand the answered call to"),
		from:        fs.String("from", "", "caller id user shown to the callee"),
		callerName:  fs.String("caller-name", "", "caller display name"),
		trunk:       fs.String("trunk", "", "only this trunk (by name), for a phone number"),
		context:     fs.String("context", "", "more for an agent to know about this call"),
		record:      fs.Bool("record", false, "record the call"),
		maxDuration: fs.Int("max-duration", 0, "end the call this many seconds after the answer (0: no limit)"),
		ringTimeout: fs.Int("ring-timeout", 0, "seconds to ring (0: the server's 30)"),
		vars:        varsFlag{},
	}
	fs.Var(f.vars, "var", "a variable name=value for the flow or agent (repeatable)")
	return f
}

// request is the call the flags describe; usage is the command's usage
// line, returned when --to is missing.
func (f *callFlags) request(cmd, usage string) (store.CallRequest, error) {
	if *f.to == "" {
		return store.CallRequest{}, errors.New(usage)
	}
	if (*f.flowID == "") == (*f.agentID == "") {
		return store.CallRequest{}, fmt.Errorf("%s: give exactly one of --flow and --agent", cmd)
	}
	r := store.CallRequest{To: *f.to, From: *f.from, CallerName: *f.callerName, Trunk: *f.trunk,
		FlowID: *f.flowID, AgentID: *f.agentID, Context: *f.context, Record: *f.record,
		MaxDurationS: *f.maxDuration, RingTimeoutS: *f.ringTimeout}
	if len(f.vars) > 0 {
		r.Variables = map[string]string(f.vars)
	}
	return r, nil
}

// callsDial serves "voxbridge calls dial": POST /v1/calls. It prints the
// new call's id as soon as the server accepted it; the dialing goes on in
// the server (follow it with "voxbridge calls get ID").
func callsDial(args []string, env cliEnv) error {
	fs := flag.NewFlagSet("calls dial", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	client := apiFlags(fs, env)
	call := addCallFlags(fs)
	asJSON := fs.Bool("json", false, "print the API's answer as JSON")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	body, err := call.request("calls dial", "usage: voxbridge calls dial --to X [--flow ID | --agent ID] [--from N] [--json]")
	if err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	var rec store.Call
	if err := c.do("POST", "/v1/calls", body, &rec); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.stdout, rec)
	}
	fmt.Fprintf(env.stdout, "%s\t%s\t%s\n", rec.ID, rec.Status, rec.Destination)
	return nil
}

package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"

	"github.com/voxbridge/voxbridge/flow"
)

// callActionVerbs are the "voxbridge calls" verbs that act on a live call:
// each is POST /v1/calls/{id}/<path> with a body made from its flags.
var callActionVerbs = map[string]func([]string, cliEnv) error{
	"hangup": callActionCommand("hangup", "hangup", func(fs *flag.FlagSet) func() (any, error) {
		reason := fs.String("reason", "", "a note kept on the call (variable hangup.api_reason)")
		return func() (any, error) { return map[string]string{"reason": *reason}, nil }
	}),
	"transfer": callActionCommand("transfer", "transfer", func(fs *flag.FlagSet) func() (any, error) {
		to := fs.String("to", "", "a number, an extension or a sip: URI (required)")
		return func() (any, error) {
			if *to == "" {
				return nil, errors.New("--to is required")
			}
			return map[string]string{"to": *to}, nil
		}
	}),
	"talk": callActionCommand("talk", "talk", func(fs *flag.FlagSet) func() (any, error) {
		text := fs.String("text", "", "what to say (required)")
		agentID := fs.String("agent", "", "the agent whose voice speaks (default: the server's default)")
		return func() (any, error) {
			if *text == "" {
				return nil, errors.New("--text is required")
			}
			b := map[string]string{"text": *text}
			if *agentID != "" {
				b["agent_id"] = *agentID
			}
			return b, nil
		}
	}),
	"dtmf": callActionCommand("dtmf", "dtmf", func(fs *flag.FlagSet) func() (any, error) {
		digits := fs.String("digits", "", "digits to send, e.g. 123# (required)")
		return func() (any, error) {
			if *digits == "" {
				return nil, errors.New("--digits is required")
			}
			return map[string]string{"digits": *digits}, nil
		}
	}),
	"mute":   callActionCommand("mute", "mute", directionBody),
	"unmute": callActionCommand("unmute", "unmute", directionBody),
	"hold":   callActionCommand("hold", "hold", nil),
	"unhold": callActionCommand("unhold", "unhold", nil),
}

func directionBody(fs *flag.FlagSet) func() (any, error) {
	dir := fs.String("direction", "both", "in (we stop hearing the caller), out (the caller hears silence) or both")
	return func() (any, error) { return map[string]string{"direction": *dir}, nil }
}

// callActionCommand makes "voxbridge calls <verb> [flags] ID". flags, when
// not nil, adds the verb's flags and returns what builds the body; without
// it the request has no body.
func callActionCommand(verb, path string, flags func(*flag.FlagSet) func() (any, error)) func([]string, cliEnv) error {
	return func(args []string, env cliEnv) error {
		fs := flag.NewFlagSet("calls "+verb, flag.ContinueOnError)
		fs.SetOutput(env.stderr)
		client := apiFlags(fs, env)
		var body func() (any, error)
		if flags != nil {
			body = flags(fs)
		}
		asJSON := fs.Bool("json", false, "print the API's answer as JSON")
		arg, err := parseOne(fs, args, fmt.Errorf("usage: voxbridge calls %s [flags] <call id>", verb))
		if err != nil {
			return err
		}
		var b any
		if body != nil {
			if b, err = body(); err != nil {
				return fmt.Errorf("calls %s: %w", verb, err)
			}
		}
		c, err := client()
		if err != nil {
			return err
		}
		var st flow.CallControlState
		if err := c.do("POST", "/v1/calls/"+url.PathEscape(arg)+"/"+path, b, &st); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env.stdout, st)
		}
		fmt.Fprintf(env.stdout, "%s\t%s\t%s\n", st.CallID, st.Action, st.Status)
		return nil
	}
}

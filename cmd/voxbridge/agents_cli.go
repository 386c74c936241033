package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/voxbridge/voxbridge/agent"
)

// agentSummary is what the agents commands read of an API agent; the API
// never sends provider keys, only whether each is set.
type agentSummary struct {
	ID       string           `json:"id"`
	Name     string           `json:"name"`
	Source   string           `json:"source"`
	STT      *agentProviderIn `json:"stt"`
	LLM      *agentProviderIn `json:"llm"`
	TTS      *agentProviderIn `json:"tts"`
	Realtime *agentProviderIn `json:"realtime"`
}

type agentProviderIn struct {
	Provider  string `json:"provider"`
	Model     string `json:"model"`
	APIKeySet bool   `json:"api_key_set"`
}

// providers says which provider does each part, e.g. "deepgram+openai+elevenlabs".
func (a agentSummary) providers() string {
	if a.Realtime != nil {
		return a.Realtime.Provider
	}
	var parts []string
	for _, p := range []*agentProviderIn{a.STT, a.LLM, a.TTS} {
		if p != nil {
			parts = append(parts, p.Provider)
		}
	}
	return strings.Join(parts, "+")
}

// runAgents serves "voxbridge agents list|create|delete" over the API.
func runAgents(args []string, env cliEnv) error {
	return dispatch("agents", args, env, map[string]func([]string, cliEnv) error{
		"list": agentsList, "create": agentsCreate, "delete": agentsDelete,
	})
}

var agentsList = apiListCommand("agents", func(tw *tabwriter.Writer, all []agentSummary) {
	fmt.Fprintln(tw, "ID\tNAME\tPROVIDERS\tSOURCE")
	for _, a := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.ID, a.Name, a.providers(), a.Source)
	}
})

// agentsCreate checks the file as --agents-dir would (so a bad one is
// reported with its name before any request) and stores it.
var agentsCreate = fileCreateCommand("agents", "as in --agents-dir", func(path string) (string, any, error) {
	d, err := agent.LoadDefinition(path)
	return d.ID, d, err
})

var agentsDelete = apiDeleteCommand("agents")

// fileCreateCommand is "voxbridge <noun> create [--replace] [--json] FILE"
// over the API: parse reads the file and returns the id and the body; 409
// conflict with --replace becomes a PUT.
func fileCreateCommand(noun, format string, parse func(path string) (id string, body any, err error)) func([]string, cliEnv) error {
	one := strings.TrimSuffix(noun, "s")
	return func(args []string, env cliEnv) error {
		fs := flag.NewFlagSet(noun+" create", flag.ContinueOnError)
		fs.SetOutput(env.stderr)
		client := apiFlags(fs, env)
		replace := fs.Bool("replace", false, "replace the "+one+" with the same id if there is one")
		asJSON := fs.Bool("json", false, "print the stored "+one+" as JSON (secrets are never included)")
		fs.Usage = func() {
			fmt.Fprintf(fs.Output(), "Usage: voxbridge %s create [flags] FILE (JSON or YAML, %s; the id defaults to the file name)\n", noun, format)
			fs.PrintDefaults()
		}
		pos, err := parseInterspersed(fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			fs.Usage()
			return fmt.Errorf("%s create: one %s file expected", noun, one)
		}
		id, body, err := parse(pos[0])
		if err != nil {
			return err
		}
		c, err := client()
		if err != nil {
			return err
		}
		var stored json.RawMessage
		err = c.do("POST", "/v1/"+noun, body, &stored)
		var ae *apiError
		if *replace && errors.As(err, &ae) && ae.Code == "conflict" {
			err = c.do("PUT", "/v1/"+noun+"/"+url.PathEscape(id), body, &stored)
		}
		if errors.As(err, &ae) && ae.Details["field"] != nil {
			err = fmt.Errorf("%w (field %v)", err, ae.Details["field"])
		}
		if err != nil {
			return fmt.Errorf("%s: %w", pos[0], err)
		}
		if *asJSON {
			return printJSON(env.stdout, stored)
		}
		fmt.Fprintf(env.stdout, "%s %s stored\n", one, id)
		return nil
	}
}

// apiDeleteCommand is "voxbridge <noun> delete <id>" over the API.
func apiDeleteCommand(noun string) func([]string, cliEnv) error {
	one := strings.TrimSuffix(noun, "s")
	return func(args []string, env cliEnv) error {
		fs := flag.NewFlagSet(noun+" delete", flag.ContinueOnError)
		fs.SetOutput(env.stderr)
		client := apiFlags(fs, env)
		arg, err := parseOne(fs, args, fmt.Errorf("usage: voxbridge %s delete <%s id>", noun, one))
		if err != nil {
			return err
		}
		c, err := client()
		if err != nil {
			return err
		}
		if err := c.do("DELETE", "/v1/"+noun+"/"+url.PathEscape(arg), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "%s %s deleted\n", one, arg)
		return nil
	}
}

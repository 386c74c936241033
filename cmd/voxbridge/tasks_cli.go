package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/voxbridge/voxbridge/store"
)

// runTasks serves "voxbridge tasks list|get|create|execute|cancel|delete"
// over the API: scheduled outbound calls.
func runTasks(args []string, env cliEnv) error {
	return dispatch("tasks", args, env, map[string]func([]string, cliEnv) error{
		"list": tasksList, "get": taskAction("get"), "create": tasksCreate,
		"execute": taskAction("execute"), "cancel": taskAction("cancel"), "delete": apiDeleteCommand("tasks"),
	})
}

func tasksList(args []string, env cliEnv) error {
	fs := flag.NewFlagSet("tasks list", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	client := apiFlags(fs, env)
	status := fs.String("status", "", "only these statuses, comma-separated (pending, in_progress, completed, failed, cancelled)")
	asJSON := fs.Bool("json", false, "print the API's answer as JSON")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	path := "/v1/tasks"
	if *status != "" {
		path += "?status=" + url.QueryEscape(*status)
	}
	all, err := listAll[store.Task](c, path)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.stdout, all)
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tTO\tRUNS\tATTEMPTS\tNEXT\tLAST REASON")
	for _, t := range all {
		next, reason := "-", "-"
		if t.NextAttemptAt != nil {
			next = t.NextAttemptAt.Format(time.RFC3339)
		}
		if t.LastHangupReason != "" {
			reason = string(t.LastHangupReason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", t.ID, t.Status, t.To, taskRuns(t), t.Attempts, t.MaxAttempts, next, reason)
	}
	return tw.Flush()
}

// taskRuns names what a task's call runs: flow:ID, agent:ID or inline.
func taskRuns(t store.Task) string {
	switch {
	case t.FlowID != "":
		return "flow:" + t.FlowID
	case t.AgentID != "":
		return "agent:" + t.AgentID
	}
	return "inline"
}

// tasksCreate serves "voxbridge tasks create": POST /v1/tasks.
func tasksCreate(args []string, env cliEnv) error {
	fs := flag.NewFlagSet("tasks create", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	client := apiFlags(fs, env)
	to := fs.String("to", "", "who to call: an extension, a phone number or a sip: URI (required)")
	flowID := fs.String("flow", "", "the flow to run once answered")
	agentID := fs.String("agent", "", "the agent to hand the answered call to")
	from := fs.String("from", "", "caller id user shown to the callee")
	trunk := fs.String("trunk", "", "only this trunk (by name), for a phone number; its max_calls limit how many tasks call at once")
	at := fs.String("at", "", "when to call, RFC 3339 (default: now)")
	attempts := fs.Int("attempts", 1, "calls to make at most (1-10)")
	interval := fs.Int("retry-interval", 300, "seconds between an unanswered call and the next attempt")
	retryOn := fs.String("retry-on", "", "hangup reasons to retry on, comma-separated (default busy,noanswer,failed; \"none\": never)")
	callCtx := fs.String("context", "", "more for an agent to know about this call")
	vars := varsFlag{}
	fs.Var(vars, "var", "a variable name=value for the flow or agent (repeatable)")
	asJSON := fs.Bool("json", false, "print the API's answer as JSON")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *to == "" {
		return errors.New("usage: voxbridge tasks create --to X (--flow ID | --agent ID) [--at TIME] [--attempts N] [--retry-interval S] [--json]")
	}
	if (*flowID == "") == (*agentID == "") {
		return errors.New("tasks create: give exactly one of --flow and --agent")
	}
	c, err := client()
	if err != nil {
		return err
	}
	body := map[string]any{"to": *to, "max_attempts": *attempts, "retry_interval_s": *interval}
	for k, v := range map[string]string{"flow_id": *flowID, "agent_id": *agentID, "from": *from, "trunk": *trunk,
		"scheduled_at": *at, "context": *callCtx} {
		if v != "" {
			body[k] = v
		}
	}
	switch *retryOn {
	case "":
	case "none":
		body["retry_on"] = []string{}
	default:
		body["retry_on"] = strings.Split(*retryOn, ",")
	}
	if len(vars) > 0 {
		body["variables"] = map[string]string(vars)
	}
	var t store.Task
	if err := c.do("POST", "/v1/tasks", body, &t); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Details["field"] != nil {
			err = fmt.Errorf("%w (field %v)", err, ae.Details["field"])
		}
		return err
	}
	if *asJSON {
		return printJSON(env.stdout, t)
	}
	fmt.Fprintf(env.stdout, "%s\t%s\t%s\t%s\n", t.ID, t.Status, t.To, t.ScheduledAt.Format(time.RFC3339))
	return nil
}

// taskAction is "voxbridge tasks get|execute|cancel ID".
func taskAction(verb string) func([]string, cliEnv) error {
	return func(args []string, env cliEnv) error {
		fs := flag.NewFlagSet("tasks "+verb, flag.ContinueOnError)
		fs.SetOutput(env.stderr)
		client := apiFlags(fs, env)
		asJSON := fs.Bool("json", false, "print the API's answer as JSON")
		pos, err := parseInterspersed(fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return fmt.Errorf("usage: voxbridge tasks %s <task id>", verb)
		}
		c, err := client()
		if err != nil {
			return err
		}
		method, path := "POST", "/v1/tasks/"+url.PathEscape(pos[0])+"/"+verb
		if verb == "get" {
			method, path = "GET", "/v1/tasks/"+url.PathEscape(pos[0])
		}
		var t store.Task
		if err := c.do(method, path, nil, &t); err != nil {
			return err
		}
		if *asJSON || verb == "get" {
			return printJSON(env.stdout, t)
		}
		fmt.Fprintf(env.stdout, "task %s %s\n", t.ID, t.Status)
		return nil
	}
}

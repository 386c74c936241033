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

var tasksList = apiListCommand("tasks", func(tw *tabwriter.Writer, all []store.Task) {
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
}, listFilter{"status", "only these statuses, comma-separated (pending, in_progress, completed, failed, cancelled)"})

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
	call := addCallFlags(fs)
	at := fs.String("at", "", "when to call, RFC 3339 (default: now)")
	attempts := fs.Int("attempts", 1, "calls to make at most (1-10)")
	interval := fs.Int("retry-interval", 300, "seconds between an unanswered call and the next attempt")
	retryOn := fs.String("retry-on", "", "hangup reasons to retry on, comma-separated (default busy,noanswer,failed; \"none\": never)")
	asJSON := fs.Bool("json", false, "print the API's answer as JSON")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	req, err := call.request("tasks create", "usage: voxbridge tasks create --to X (--flow ID | --agent ID) [--at TIME] [--attempts N] [--retry-interval S] [--json]")
	if err != nil {
		return err
	}
	body := struct {
		store.CallRequest
		ScheduledAt    string   `json:"scheduled_at,omitempty"`
		MaxAttempts    int      `json:"max_attempts"`
		RetryIntervalS int      `json:"retry_interval_s"`
		RetryOn        []string `json:"retry_on"` // null: the default
	}{CallRequest: req, ScheduledAt: *at, MaxAttempts: *attempts, RetryIntervalS: *interval}
	switch *retryOn {
	case "":
	case "none":
		body.RetryOn = []string{} // never
	default:
		body.RetryOn = strings.Split(*retryOn, ",")
	}
	c, err := client()
	if err != nil {
		return err
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
		arg, err := parseOne(fs, args, fmt.Errorf("usage: voxbridge tasks %s <task id>", verb))
		if err != nil {
			return err
		}
		c, err := client()
		if err != nil {
			return err
		}
		method, path := "POST", "/v1/tasks/"+url.PathEscape(arg)+"/"+verb
		if verb == "get" {
			method, path = "GET", "/v1/tasks/"+url.PathEscape(arg)
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

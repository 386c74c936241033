package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/voxbridge/voxbridge/flow"
	"github.com/voxbridge/voxbridge/store"
)

// The API commands (calls, flows) talk to a running server over HTTP.
const (
	envAPIURL     = "VOXBRIDGE_API_URL"
	defaultAPIURL = "http://127.0.0.1:8080"
	clientTimeout = 30 * time.Second
)

// dispatch runs "voxbridge <noun> <verb> ..." and names the verbs that
// exist when the one given does not.
func dispatch(noun string, args []string, env cliEnv, verbs map[string]func([]string, cliEnv) error) error {
	names := make([]string, 0, len(verbs))
	for v := range verbs {
		names = append(names, v)
	}
	slices.Sort(names)
	usage := fmt.Sprintf("usage: voxbridge %s %s [flags] (run \"voxbridge %s <verb> -h\" for flags)", noun, strings.Join(names, "|"), noun)
	if len(args) == 0 {
		return errors.New(usage)
	}
	f, ok := verbs[args[0]]
	if !ok {
		return fmt.Errorf("%s: unknown verb %q\n%s", noun, args[0], usage)
	}
	return f(args[1:], env)
}

// apiClient calls the control API with a key.
type apiClient struct {
	base string
	key  string
	http *http.Client
}

// apiFlags adds --api and --key; the returned function makes the client
// once the flags are parsed (flag, then environment, then default).
func apiFlags(fs *flag.FlagSet, env cliEnv) func() (*apiClient, error) {
	base := fs.String("api", "", "API base URL (env "+envAPIURL+", default "+defaultAPIURL+")")
	key := fs.String("key", "", "API key (env "+envAPIKey+"; prefer the environment, flags show in ps)")
	return func() (*apiClient, error) {
		c := &apiClient{base: firstOf(*base, env.getenv(envAPIURL), defaultAPIURL), key: firstOf(*key, env.getenv(envAPIKey)),
			http: &http.Client{Timeout: clientTimeout}}
		u, err := url.Parse(c.base)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("API URL %q: want http(s)://host:port", c.base)
		}
		c.base = strings.TrimRight(c.base, "/")
		if c.key == "" {
			return nil, errors.New("no API key: set " + envAPIKey + " or pass --key (make one with: voxbridge keys create --name NAME)")
		}
		return c, nil
	}
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// apiError is an error answer of the API, for people.
type apiError struct {
	Status  int
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details"`
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("API: %d %s: %s", e.Status, e.Code, e.Message)
	if e.Code == "invalid_flow" && e.Details != nil {
		msg += fmt.Sprintf(" (action index %v, id %q, field %q)", e.Details["action_index"], e.Details["action_id"], e.Details["field"])
	}
	return msg
}

// do sends a request (body as JSON when not nil) and decodes a 2xx answer
// into out (when not nil).
func (c *apiClient) do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("API: %w", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("API: reading the answer: %w", err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		var eb struct {
			Error *apiError `json:"error"`
		}
		if json.Unmarshal(b, &eb) != nil || eb.Error == nil {
			return fmt.Errorf("API: %s %s: %s: %.200s", method, path, res.Status, b)
		}
		eb.Error.Status = res.StatusCode
		return eb.Error
	}
	if out == nil || res.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("API: %s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// listPage is one page of a list answer.
type listPage[T any] struct {
	Result        []T    `json:"result"`
	NextPageToken string `json:"next_page_token"`
}

// listAll follows next_page_token to the end.
func listAll[T any](c *apiClient, path string) ([]T, error) {
	all := []T{}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	for tok := ""; ; {
		p := path + sep + "page_size=100"
		if tok != "" {
			p += "&page_token=" + url.QueryEscape(tok)
		}
		var page listPage[T]
		if err := c.do("GET", p, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Result...)
		if page.NextPageToken == "" {
			return all, nil
		}
		tok = page.NextPageToken
	}
}

// runCalls serves "voxbridge calls list|get".
func runCalls(args []string, env cliEnv) error {
	return dispatch("calls", args, env, map[string]func([]string, cliEnv) error{
		"list": callsList, "get": callsGet, "dial": callsDial,
		"hangup": callActionVerbs["hangup"], "transfer": callActionVerbs["transfer"], "talk": callActionVerbs["talk"],
		"dtmf": callActionVerbs["dtmf"], "mute": callActionVerbs["mute"], "unmute": callActionVerbs["unmute"],
		"hold": callActionVerbs["hold"], "unhold": callActionVerbs["unhold"],
		"recording": callsDownload("recording", "/recording", "the call's recording (WAV)"),
		"capture":   callsDownload("capture", "/capture", "the call's packet capture (pcap)"),
	})
}

func callsList(args []string, env cliEnv) error {
	fs := flag.NewFlagSet("calls list", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	client := apiFlags(fs, env)
	status := fs.String("status", "", "only these statuses, comma-separated (dialing, ringing, progressing, terminating, canceling, hangup)")
	direction := fs.String("direction", "", "only incoming or outgoing calls")
	from := fs.String("from", "", "only calls created at or after this RFC 3339 time")
	to := fs.String("to", "", "only calls created before this RFC 3339 time")
	agentID := fs.String("agent", "", "only calls this agent (id) talked on")
	size := fs.Int("page-size", 20, "calls per page (1-100)")
	token := fs.String("page-token", "", "the page to show (printed after a page that has a next one)")
	asJSON := fs.Bool("json", false, "print the API's answer as JSON")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"status": *status, "direction": *direction, "agent": *agentID, "from": *from, "to": *to, "page_token": *token} {
		if v != "" {
			q.Set(k, v)
		}
	}
	q.Set("page_size", fmt.Sprint(*size))
	var page listPage[store.Call]
	if err := c.do("GET", "/v1/calls?"+q.Encode(), nil, &page); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.stdout, page)
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tDIRECTION\tSTATUS\tFROM\tTO\tHANGUP")
	for _, call := range page.Result {
		hangup := "-"
		if call.HangupReason != "" {
			hangup = string(call.HangupBy) + "/" + string(call.HangupReason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", call.ID, call.TMCreate.Format(time.RFC3339), call.Direction, call.Status,
			call.Source, call.Destination, hangup)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if page.NextPageToken != "" {
		fmt.Fprintf(env.stderr, "more: --page-token %s\n", page.NextPageToken)
	}
	return nil
}

func callsGet(args []string, env cliEnv) error {
	fs := flag.NewFlagSet("calls get", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	client := apiFlags(fs, env)
	asJSON := fs.Bool("json", false, "print the API's answer as JSON")
	arg, err := parseOne(fs, args, errors.New("usage: voxbridge calls get [--json] <call id>"))
	if err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	// --json prints the answer as it came, every field of it.
	var raw json.RawMessage
	if err := c.do("GET", "/v1/calls/"+url.PathEscape(arg), nil, &raw); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.stdout, raw)
	}
	var call struct {
		store.Call
		Actions    []store.ActionRun `json:"actions"`
		Recordings []struct {
			ID           string `json:"id"`
			Status       string `json:"status"`
			DurationMS   int64  `json:"duration_ms"`
			Channels     int    `json:"channels"`
			DownloadPath string `json:"download_path"`
		} `json:"recordings"`
		Latency *struct {
			Turns int     `json:"turns"`
			P50   float64 `json:"voice_to_voice_p50_ms"`
			P95   float64 `json:"voice_to_voice_p95_ms"`
		} `json:"latency"`
	}
	if err := json.Unmarshal(raw, &call); err != nil {
		return fmt.Errorf("API: decoding the call: %w", err)
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("id", call.ID)
	row("direction", call.Direction)
	row("status", call.Status)
	row("from", call.Source)
	row("to", call.Destination)
	row("created", call.TMCreate.Format(time.RFC3339))
	row("answered", timeOrDash(call.TMProgressing))
	row("ended", timeOrDash(call.TMHangup))
	if call.HangupReason != "" {
		row("hangup", fmt.Sprintf("%s, %s (SIP %d)", call.HangupBy, call.HangupReason, call.SIPCode))
	}
	row("codec", call.Codec)
	row("dtmf", call.DTMF)
	row("rtp in/out/lost", fmt.Sprintf("%d/%d/%d", call.RTPPacketsIn, call.RTPPacketsOut, call.RTPPacketsLost))
	row("flow", call.FlowID)
	if q := call.Quality; q != nil {
		row("quality", fmt.Sprintf("MOS %.2f, jitter %.1f ms, RTT %.0f ms", q.MOS, q.JitterMS, q.RTTMS))
	}
	if l := call.Latency; l != nil {
		row("voice-to-voice", fmt.Sprintf("p50 %.0f ms, p95 %.0f ms over %d turns", l.P50, l.P95, l.Turns))
	}
	for _, r := range call.Recordings {
		row("recording", fmt.Sprintf("%s %s, %.1f s, %d channels: %s", r.ID, r.Status, float64(r.DurationMS)/1000, r.Channels, r.DownloadPath))
	}
	for _, w := range call.Warnings {
		row("warning", w)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(call.Actions) > 0 {
		fmt.Fprintln(env.stdout)
		tw = tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "#\tFLOW\tACTION\tTYPE\tRESULT\tMS\tERROR")
		for _, a := range call.Actions {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", a.Seq, a.FlowID, a.ActionID, a.Type, a.Result, a.TMEnd.Sub(a.TMStart).Milliseconds(), a.Error)
		}
		return tw.Flush()
	}
	return nil
}

// runFlowsAPI serves the flows verbs that go through a server.
func runFlowsAPI(args []string, env cliEnv) error {
	return dispatch("flows", args, env, map[string]func([]string, cliEnv) error{
		"list": flowsList, "create": flowsCreate, "delete": flowsDelete,
		"validate": func(a []string, env cliEnv) error { return runFlows(append([]string{"validate"}, a...), env.stdout) },
	})
}

var flowsList = apiListCommand("flows", func(tw *tabwriter.Writer, flows []store.Flow) {
	fmt.Fprintln(tw, "ID\tNAME\tACTIONS\tSOURCE\tUPDATED")
	for _, f := range flows {
		var actions []json.RawMessage
		_ = json.Unmarshal(f.Actions, &actions)
		source := f.Source
		if source == "" {
			source = "api"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", f.ID, f.Name, len(actions), source, f.TMUpdate.Format(time.RFC3339))
	}
})

// flowsCreate checks the file as flows validate would (so a bad one is
// reported with its name before any request) and stores it.
var flowsCreate = fileCreateCommand("flows", "as flows validate reads it", func(path string) (string, any, error) {
	f, err := flow.ParseFile(path)
	if err != nil {
		return "", nil, err
	}
	return f.ID, f, nil
})

var flowsDelete = apiDeleteCommand("flows")

// callsDownload is "voxbridge calls recording|capture ID -o FILE": the
// file the API serves under /v1/calls/ID<suffix>.
func callsDownload(verb, suffix, what string) func([]string, cliEnv) error {
	return func(args []string, env cliEnv) error {
		fs := flag.NewFlagSet("calls "+verb, flag.ContinueOnError)
		fs.SetOutput(env.stderr)
		client := apiFlags(fs, env)
		out := fs.String("o", "", "write "+what+" to this file (- for stdout)")
		asJSON := fs.Bool("json", false, `print {"path","bytes"} as JSON instead of a sentence`)
		usage := fmt.Errorf("usage: voxbridge calls %s <call id> -o FILE", verb)
		id, err := parseOne(fs, args, usage)
		if err != nil {
			return err
		}
		if *out == "" {
			return usage
		}
		c, err := client()
		if err != nil {
			return err
		}
		path := "/v1/calls/" + url.PathEscape(id) + suffix
		if *out == "-" {
			_, err := c.download(path, env.stdout)
			return err
		}
		n, err := c.downloadFile(path, *out)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env.stdout, map[string]any{"path": *out, "bytes": n})
		}
		fmt.Fprintf(env.stdout, "%s of call %s written to %s (%d bytes)\n", verb, id, *out, n)
		return nil
	}
}

// download copies a non-JSON answer (a file) to w. Unlike do, there is no
// overall timeout: a long recording on a slow link must not be cut off;
// the connection's own idle limits still apply.
func (c *apiClient) download(path string, w io.Writer) (int64, error) {
	req, err := http.NewRequest("GET", c.base+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	hc := *c.http
	hc.Timeout = 0
	res, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("API: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		var eb struct {
			Error *apiError `json:"error"`
		}
		if json.Unmarshal(b, &eb) != nil || eb.Error == nil {
			return 0, fmt.Errorf("API: GET %s: %s: %.200s", path, res.Status, b)
		}
		eb.Error.Status = res.StatusCode
		return 0, eb.Error
	}
	n, err := io.Copy(w, res.Body)
	if err != nil {
		return n, fmt.Errorf("API: GET %s: %w", path, err)
	}
	return n, nil
}

// downloadFile downloads to a temporary file next to dst and renames it
// into place, so a failed download never leaves a truncated dst.
func (c *apiClient) downloadFile(path, dst string) (int64, error) {
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return 0, err
	}
	n, err := c.download(path, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), dst)
	}
	if err != nil {
		os.Remove(f.Name())
		return 0, err
	}
	return n, nil
}

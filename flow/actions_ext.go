package flow

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // condition_datetime must work on hosts without zoneinfo
)

// ConditionDatetimeOption continues when the call's time matches every
// given part (weekdays, time of day, dates) in Timezone, else jumps.
type ConditionDatetimeOption struct {
	Timezone      string   `json:"timezone,omitempty"`   // IANA name, default UTC
	Weekdays      []string `json:"weekdays,omitempty"`   // mon tue wed thu fri sat sun
	StartTime     string   `json:"start_time,omitempty"` // "09:00", inclusive
	EndTime       string   `json:"end_time,omitempty"`   // "17:00", exclusive; before start spans midnight
	Dates         []string `json:"dates,omitempty"`      // "2026-12-24": holds only on these dates
	FalseTargetID string   `json:"false_target_id"`
}

var weekdayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

func compileConditionDatetime(o *ConditionDatetimeOption) (step, error) {
	if o.FalseTargetID == "" {
		return step{}, badField("false_target_id", "required")
	}
	loc := time.UTC
	if o.Timezone != "" {
		l, err := time.LoadLocation(o.Timezone)
		if err != nil {
			return step{}, badField("timezone", "unknown time zone %q", o.Timezone)
		}
		loc = l
	}
	days := map[time.Weekday]bool{}
	for i, d := range o.Weekdays {
		wd, ok := weekdayNames[strings.ToLower(d)]
		if !ok {
			return step{}, badField(fmt.Sprintf("weekdays[%d]", i), "%q is not one of mon tue wed thu fri sat sun", d)
		}
		days[wd] = true
	}
	start, end := -1, -1
	if o.StartTime != "" || o.EndTime != "" {
		var err error
		if start, err = clockMinutes(o.StartTime); err != nil {
			return step{}, badField("start_time", "%v", err)
		}
		if end, err = clockMinutes(o.EndTime); err != nil {
			return step{}, badField("end_time", "%v", err)
		}
		if start == end {
			return step{}, badField("end_time", "equals start_time: an empty window")
		}
	}
	dates := map[string]bool{}
	for i, d := range o.Dates {
		if _, err := time.Parse(time.DateOnly, d); err != nil {
			return step{}, badField(fmt.Sprintf("dates[%d]", i), "%q is not a YYYY-MM-DD date", d)
		}
		dates[d] = true
	}
	match := func(t time.Time) bool {
		t = t.In(loc)
		if len(days) > 0 && !days[t.Weekday()] {
			return false
		}
		if len(dates) > 0 && !dates[t.Format(time.DateOnly)] {
			return false
		}
		if start >= 0 {
			m := t.Hour()*60 + t.Minute()
			if start < end && (m < start || m >= end) {
				return false
			}
			if start > end && m < start && m >= end { // window across midnight
				return false
			}
		}
		return true
	}
	st := step{timeout: 5 * time.Second, fallsThrough: true, jumps: []string{o.FalseTargetID}}
	st.exec = func(ctx context.Context, r *run) (string, error) {
		if match(r.c.ct.now()) {
			return "", nil
		}
		return o.FalseTargetID, nil
	}
	return st, nil
}

// clockMinutes parses "HH:MM" into minutes after midnight.
func clockMinutes(s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("required with the other of start_time/end_time")
	}
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// WebhookSendOption sends an HTTP request about the call. With Sync, the
// flow waits for the reply and a JSON object reply's fields become
// variables webhook.<field>.
type WebhookSendOption struct {
	URL       string            `json:"url"`
	Method    string            `json:"method,omitempty"` // default POST
	Headers   map[string]string `json:"headers,omitempty"`
	Body      string            `json:"body,omitempty"` // template; default: the call's variables as JSON
	TimeoutMS int               `json:"timeout_ms,omitempty"`
	Sync      bool              `json:"sync,omitempty"`
}

// maxWebhookReply bounds what a webhook reply may send back.
const maxWebhookReply = 64 << 10

func compileWebhookSend(o *WebhookSendOption) (step, error) {
	if !strings.Contains(o.URL, "${") {
		if err := checkWebhookURL(o.URL); err != nil {
			return step{}, badField("url", "%v", err)
		}
	}
	method := strings.ToUpper(o.Method)
	switch method {
	case "":
		method = http.MethodPost
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		return step{}, badField("method", "must be GET, POST, PUT, PATCH or DELETE, not %q", o.Method)
	}
	timeout, err := msOption("timeout_ms", o.TimeoutMS, 5000, 100, 30000)
	if err != nil {
		return step{}, err
	}
	for k := range o.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			return step{}, badField("headers", "bad header name %q", k)
		}
	}
	return seq(timeout+time.Second, func(ctx context.Context, r *run) (string, error) {
		u := r.c.expand(o.URL)
		if err := checkWebhookURL(u); err != nil {
			return "", err
		}
		var body []byte
		if o.Body != "" {
			body = []byte(r.c.expand(o.Body))
		} else {
			body, _ = json.Marshal(r.c.vars())
		}
		headers := make(map[string]string, len(o.Headers))
		for k, v := range o.Headers {
			headers[k] = strings.NewReplacer("\r", "", "\n", "").Replace(r.c.expand(v))
		}
		send := func(ctx context.Context) ([]byte, error) {
			return r.c.ct.sendWebhook(ctx, method, u, headers, body, timeout)
		}
		if !o.Sync {
			// Fire and forget, but owned: the controller waits for it at
			// shutdown, and it outlives the call on purpose (a hangup
			// notice must still go out).
			r.c.ct.background(func(ctx context.Context) {
				if _, err := send(ctx); err != nil {
					r.c.log.Warn("webhook failed", "url", redactURL(u), "err", err)
				}
			})
			return "", nil
		}
		reply, err := send(ctx)
		if err != nil {
			return "", err
		}
		for k, v := range webhookVars(reply) {
			r.c.setVar("webhook."+k, v)
		}
		return "", nil
	}), nil
}

func checkWebhookURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

// redactURL drops a URL's query and user info, which often carry tokens.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(bad url)"
	}
	u.RawQuery, u.User = "", nil
	return u.String()
}

// webhookVars turns a JSON object reply into variables; anything else gives
// none.
func webhookVars(reply []byte) map[string]string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(reply, &obj) != nil {
		return nil
	}
	out := make(map[string]string, len(obj))
	for k, raw := range obj {
		if checkVarName("", k, false) != nil {
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			out[k] = s
			continue
		}
		var f float64
		if json.Unmarshal(raw, &f) == nil {
			out[k] = strconv.FormatFloat(f, 'f', -1, 64)
			continue
		}
		out[k] = string(raw) // bools, objects, arrays as JSON text
	}
	return out
}

// sendWebhook performs one webhook request and returns the reply body of a
// 2xx answer.
func (ct *Controller) sendWebhook(ctx context.Context, method, u string, headers map[string]string, body []byte, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if method != http.MethodGet {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "voxbridge")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := ct.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("webhook %s: %w", redactURL(u), err)
	}
	defer res.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(res.Body, maxWebhookReply))
	if err != nil {
		return nil, fmt.Errorf("webhook %s: %w", redactURL(u), err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return nil, fmt.Errorf("webhook %s: HTTP %d", redactURL(u), res.StatusCode)
	}
	return reply, nil
}

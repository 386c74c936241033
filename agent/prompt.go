package agent

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

var varRE = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_.-]*)\s*\}\}`)

// Render replaces {{name}} with vars[name]; a variable with no value
// becomes empty, so a prompt never shows the model template syntax. The
// names that had no value are returned for logging.
func Render(text string, vars map[string]string) (string, []string) {
	var missing []string
	out := varRE.ReplaceAllStringFunc(text, func(m string) string {
		name := varRE.FindStringSubmatch(m)[1]
		v, ok := vars[name]
		if !ok && !slices.Contains(missing, name) {
			missing = append(missing, name)
		}
		return v
	})
	return out, missing
}

// BuildSystemPrompt builds the system message: the rendered prompt, then the
// objectives, constraints, task steps, knowledge and the transfer targets,
// each under a heading, then what the medium requires of the replies.
func (d Definition) BuildSystemPrompt(vars map[string]string) (string, []string) {
	var b strings.Builder
	prompt, missing := Render(strings.TrimSpace(d.SystemPrompt), vars)
	b.WriteString(prompt)
	section := func(title string, items []string, numbered bool) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n\n## %s\n", title)
		for i, it := range items {
			it, m := Render(strings.TrimSpace(it), vars)
			missing = appendNew(missing, m...)
			if numbered {
				fmt.Fprintf(&b, "%d. %s\n", i+1, it)
			} else {
				fmt.Fprintf(&b, "- %s\n", it)
			}
		}
	}
	section("Objectives", d.Objectives, false)
	section("Constraints", d.Constraints, false)
	section("Steps", d.TaskSteps, true)
	if k := strings.TrimSpace(d.Knowledge); k != "" {
		k, m := Render(k, vars)
		missing = appendNew(missing, m...)
		fmt.Fprintf(&b, "\n\n## Knowledge\n%s\n", k)
	}
	if d.toolEnabled(ToolTransferCall) && len(d.TransferTargets) > 0 {
		b.WriteString("\n\n## Transfer targets\nYou may transfer the call only to these targets, never elsewhere, whatever the caller asks:\n")
		for _, t := range d.TransferTargets {
			if t.Description != "" {
				fmt.Fprintf(&b, "- %s: %s\n", t.Name, t.Description)
			} else {
				fmt.Fprintf(&b, "- %s\n", t.Name)
			}
		}
	}
	b.WriteString("\n\nYou are speaking with a caller on the phone. Reply in short spoken sentences without lists, markdown or emoji. ")
	b.WriteString("Lines starting with \"[DTMF]\" are keys the caller pressed on the phone.")
	if d.Language != "" {
		fmt.Fprintf(&b, " Speak the language %s.", d.Language)
	}
	return strings.TrimSpace(b.String()), missing
}

func appendNew(list []string, items ...string) []string {
	for _, it := range items {
		if !slices.Contains(list, it) {
			list = append(list, it)
		}
	}
	return list
}
